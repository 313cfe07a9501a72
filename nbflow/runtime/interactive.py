"""The Databricks runtime in an interactive kernel: ``%load_ext nbflow`` in any IPython kernel
(JupyterLab, VS Code, a terminal), and the nbflow kernel (``nbflow kernel install``), which loads it
at start.

The runtime is the one ``nbflow run`` installs (:func:`nbflow.runtime.kernel.setup`); what differs
is where its context comes from. A run's engine sends it; here it is found:

- the notebook: the path Jupyter gives its kernel (``JPY_SESSION_NAME``, resolved from the
  kernel's folder, which Jupyter sets to the notebook's), or VS Code's ``__vsc_ipynb_file__``;
  else an unnamed notebook in the working directory. ``%run`` and ``dbutils.notebook.run``
  resolve from its folder, as in the workspace.
- the project: ``NBFLOW_PROJECT_DIR``, else the nearest folder up from the notebook's that has
  ``.nbflow/``, a bundle (``databricks.yml``) or a ``pyproject.toml``, else the working
  directory. Notebooks open in the same project share its cluster and its tables.
- the cluster: the project's, started when ``spark`` is first used (``NBFLOW_ENGINE`` picks the
  engine of one it starts, as ``--engine`` does).

Widgets, task values and exits follow Databricks' rules for a notebook run by hand:
``dbutils.notebook.exit`` ends the cell with ``Notebook exited: <value>``; ``taskValues.get``
returns its ``debugValue``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import pool_wire
from ..catalog import DEFAULT_CATALOG
from ..project import STATE_DIR, dbfs_root, processed_dir, secrets_file
from .context import RunContext
from .widget_panel import WidgetPanel, saved_values

PROJECT_MARKERS = (STATE_DIR, "databricks.yml", "databricks.yaml", "pyproject.toml")
ACTIVITY_EVERY_S = 30.0
UNNAMED = "Untitled.ipynb"  # the notebook of a session Jupyter did not name (a console, a terminal)

_loaded: dict[int, Callable[[], None]] = {}  # shell id -> what unloads the runtime from it


def find_project(folder: Path) -> Path:
    """The project a notebook in ``folder`` belongs to (see the module's docstring)."""
    named = os.environ.get("NBFLOW_PROJECT_DIR")
    if named:
        return Path(named).resolve()
    folder = folder.resolve()
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return Path.cwd().resolve()


def notebook_file(shell: Any) -> Path:
    """The notebook this kernel runs (see the module's docstring)."""
    session_name = os.environ.get("JPY_SESSION_NAME", "")
    if session_name:
        named = Path(session_name)
        if named.is_absolute():
            return named
        # Jupyter names it from its root folder and starts the kernel in the notebook's folder.
        return Path.cwd() / named.name
    vscode = getattr(shell, "user_ns", {}).get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode:
        return Path(vscode)
    return Path.cwd() / UNNAMED


def interactive_context(shell: Any) -> RunContext:
    """The context of an interactive session of the notebook this kernel runs."""
    notebook = notebook_file(shell).resolve()
    project = find_project(notebook.parent)
    run_id = time.strftime("interactive-%Y%m%d-%H%M%S-") + str(os.getpid())
    found = secrets_file(project)
    return RunContext(
        notebook_path=str(notebook),
        # Never written (no engine saves an interactive notebook); its children are saved beside it.
        output_path=str(processed_dir(project) / run_id / (notebook.stem + ".ipynb")),
        run_id=run_id,
        project_dir=str(project),
        dbfs_root=str(dbfs_root(project)),
        secrets_file=None if found is None else str(found),
        python=sys.executable,
        engine=os.environ.get("NBFLOW_ENGINE") or "auto",
        interactive=True,
        saved_widgets={**_file_widget_values(notebook), **saved_values(project, str(notebook))} or None,
    )


def _file_widget_values(notebook: Path) -> dict[str, str]:
    """The widget values saved in an ``.ipynb`` (a Databricks export's current values, nbflow
    lab's ``nbflow_widgets``): where a first session of the notebook starts."""
    if notebook.suffix.lower() != ".ipynb":
        return {}
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata")
    except (OSError, ValueError, AttributeError):
        return {}
    from ..notebooks import saved_widget_values  # lazy: nbformat's readers stay out of the kernel

    return saved_widget_values(metadata) if isinstance(metadata, dict) else {}


def load(shell: Any) -> None:
    """``%load_ext nbflow``: the runtime in this shell, once (loading again changes nothing)."""
    if id(shell) in _loaded:
        return
    from .kernel import setup  # lazy: the runtime, only once asked for

    context = interactive_context(shell)
    undo = setup(shell, context)
    _draw_widgets(shell, context)
    report = _activity_reporter(Path(context.project_dir))
    shell.events.register("post_run_cell", report)

    def unload_all() -> None:
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", report)
        undo()

    _loaded[id(shell)] = unload_all
    print(f"nbflow: project {context.project_dir}; {_cluster_line(Path(context.project_dir))}; "
          f"catalog {DEFAULT_CATALOG} (schema default)")


def unload(shell: Any) -> None:
    """``%unload_ext nbflow``: the runtime's names, magics and hooks taken out of this shell."""
    undo = _loaded.pop(id(shell), None)
    if undo is not None:
        undo()


def _draw_widgets(shell: Any, context: RunContext) -> None:
    """Widgets as ipywidgets when a front end can draw them: a Jupyter kernel with ipywidgets
    installed (a terminal IPython, or CI, keeps the defaults, as nbflow run does)."""
    if getattr(shell, "kernel", None) is None or importlib.util.find_spec("ipywidgets") is None:
        return
    from .active import installed  # lazy: the session setup made

    session = installed()
    if session is not None:
        session.dbutils.widgets.panel = WidgetPanel(
            shell, context.project_dir, context.notebook_path, context.saved_widgets)


def _activity_reporter(project: Path) -> Callable[..., None]:
    """After a cell, tell the cluster's pool service that the cluster is in use (at most every
    ``ACTIVITY_EVERY_S``), so that it does not auto-terminate under a user working by hand."""
    last = [0.0]

    def report(*_: Any) -> None:
        from .active import installed  # lazy: the session is set by then

        session = installed()
        now = time.monotonic()
        if session is None or not session.lakehouse.attached or now - last[0] < ACTIVITY_EVERY_S:
            return
        last[0] = now
        # Off the cell's thread: a service slow to answer must not hold the notebook up.
        threading.Thread(target=pool_wire.ask, args=(project, {"op": "activity"}), kwargs={"timeout": 2.0},
                         daemon=True).start()

    return report


def _cluster_line(project: Path) -> str:
    from ..cluster.state import Damaged, read_state  # lazy: a line at load, nothing more

    try:
        state = read_state(project)
    except Damaged:
        state = None
    if state is not None and state.pid is not None and _alive(state.pid):
        return f"cluster: {state.engine} at {state.url} (running)"
    if state is not None and state.pid is None:
        return f"cluster: {state.url} ({state.engine})"
    engine = os.environ.get("NBFLOW_ENGINE") or "auto"
    return f"cluster: starts on first use of spark (engine {engine})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
