/**
 * nbflow's JupyterLab extension: Databricks source notebooks open as notebooks.
 *
 * nbflow's contents manager (nbflow.jupyter.contents) lists a `.py` or `.sql` file that starts
 * with Databricks' header as a notebook and serves it as one. JupyterLab itself picks the editor
 * for a file from its extension alone, so without this a double-click opens the text editor.
 * Here a notebook widget factory ("Databricks Notebook") is registered for `.py` and `.sql`
 * files, and becomes the default for exactly the files the server listed as notebooks; other
 * `.py` files still open in the editor, and "Open With" offers both.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { createToolbarFactory, IToolbarWidgetRegistry } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import type { FileBrowserModel } from '@jupyterlab/filebrowser';
import {
  INotebookTracker,
  INotebookWidgetFactory,
  NotebookTracker,
  NotebookWidgetFactory
} from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

const FACTORY = 'Databricks Notebook';
const SOURCE = /\.(py|sql)$/i;
// The notebook toolbar's items and settings are looked up under the stock factory's name.
const NOTEBOOK_FACTORY = 'Notebook';
const NOTEBOOK_PANEL_PLUGIN = '@jupyterlab/notebook-extension:panel';

/** The paths the server listed as notebooks although they end in .py or .sql. */
class SourceNotebooks {
  private _paths = new Set<string>();

  has(path: string): boolean {
    return this._paths.has(PathExt.normalize(path));
  }

  /** Take in a listing of the file browser: its source notebooks, and no longer the others. */
  update(model: FileBrowserModel): void {
    for (const item of model.items()) {
      if (!SOURCE.test(item.name)) {
        continue;
      }
      const path = PathExt.normalize(item.path);
      if (item.type === 'notebook') {
        this._paths.add(path);
      } else {
        this._paths.delete(path);
      }
    }
  }
}

function addSqlFileType(registry: DocumentRegistry): void {
  if (!registry.getFileType('sql')) {
    registry.addFileType({
      name: 'sql',
      displayName: 'SQL File',
      extensions: ['.sql'],
      mimeTypes: ['text/x-sql'],
      contentType: 'file',
      fileFormat: 'text'
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbflow-lab:source-notebooks',
  description: 'Opens Databricks source notebooks (.py, .sql) as notebooks.',
  autoStart: true,
  requires: [INotebookWidgetFactory, INotebookTracker],
  optional: [IDefaultFileBrowser, IToolbarWidgetRegistry, ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    stock: NotebookWidgetFactory.IFactory,
    tracker: INotebookTracker,
    browser: IDefaultFileBrowser | null,
    toolbarRegistry: IToolbarWidgetRegistry | null,
    settings: ISettingRegistry | null,
    translator: ITranslator | null
  ): void => {
    const registry = app.docRegistry;
    addSqlFileType(registry);
    // The stock factory is a NotebookWidgetFactory; its token only promises the interface.
    const model = stock as NotebookWidgetFactory;
    const factory = new NotebookWidgetFactory({
      name: FACTORY,
      label: FACTORY,
      fileTypes: ['python', 'sql'],
      modelName: 'notebook',
      preferKernel: true,
      canStartKernel: true,
      rendermime: model.rendermime,
      contentFactory: model.contentFactory,
      mimeTypeService: model.mimeTypeService,
      editorConfig: model.editorConfig,
      notebookConfig: model.notebookConfig,
      toolbarFactory:
        toolbarRegistry && settings
          ? createToolbarFactory(
              toolbarRegistry,
              settings,
              NOTEBOOK_FACTORY,
              NOTEBOOK_PANEL_PLUGIN,
              translator ?? nullTranslator
            )
          : undefined,
      translator: translator ?? nullTranslator
    });
    registry.addWidgetFactory(factory);
    // Tracked as any notebook, so the notebook commands (run, kernel, save) work on it.
    factory.widgetCreated.connect((_, panel) => {
      void (tracker as NotebookTracker).add(panel);
    });

    const sources = new SourceNotebooks();
    if (browser) {
      browser.model.refreshed.connect(m => sources.update(m));
      sources.update(browser.model);
    }
    // JupyterLab's file browser opens a file with the registry's first preferred factory for
    // its path; put ours first for the source notebooks the server listed.
    const preferred = registry.preferredWidgetFactories.bind(registry);
    registry.preferredWidgetFactories = (path: string) => {
      const found = preferred(path);
      if (!sources.has(path)) {
        return found;
      }
      return [factory, ...found.filter(f => f !== factory)];
    };
  }
};

export default plugin;
