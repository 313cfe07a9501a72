"""Reading notebooks: Jupyter ``.ipynb`` files and Databricks source files, into nbformat.

A Databricks source notebook is a ``.py`` file whose first line is exactly
``# Databricks notebook source`` (``-- Databricks notebook source`` in a ``.sql`` file, the
same with ``//`` in ``.scala`` and ``#`` in ``.r``); cells are separated by
``# COMMAND ----------`` lines, cells in another language carry ``# MAGIC `` on every line (the
first one naming the magic, e.g. ``# MAGIC %md``), and ``# DBTITLE 0,Title`` lines give a cell
its title. In a SQL notebook each of those lines starts with ``--`` instead of ``#``.

Magic cells are kept in Databricks' own syntax (``%sql`` on the first line, then the body) so
the same cell text runs whether it came from a source file or from an ``.ipynb`` exported by
Databricks: the kernel runtime (:mod:`nbflow.runtime.magics`) turns that syntax into IPython
magics. Only ``%md`` cells become markdown cells, because they are not code. The kernel runs
Python, so a SQL notebook's own cells become ``%sql`` cells; Scala and R notebooks are refused
before any kernel starts.
"""

from __future__ import annotations

import ast
import re
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from .errors import NotebookFormatError, NotebookNotFound

if TYPE_CHECKING:
    from nbformat import NotebookNode

SOURCE_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
MAGIC_PREFIX = "# MAGIC"
TITLE_PREFIX = "# DBTITLE"
# A workspace path has no extension: ``./child`` is the first of these that exists.
NOTEBOOK_SUFFIXES = (".ipynb", ".py", ".sql", ".scala", ".r", ".R")
# The comment a source notebook's marker lines start with, by file extension.
SOURCE_COMMENTS = {".py": "#", ".sql": "--", ".scala": "//", ".r": "#"}
LANGUAGE_NAMES = {".py": "python", ".sql": "sql", ".scala": "scala", ".r": "r"}
# Languages nbflow's Python kernel cannot run; a notebook in one of them is refused up front.
FOREIGN_LANGUAGES = {"scala": "Scala", "r": "R"}
DATABRICKS_NOTEBOOK = "application/vnd.databricks.v1+notebook"
DATABRICKS_CELL = "application/vnd.databricks.v1+cell"
# Notebook metadata: the widget values a user set in nbflow lab's widget panel, saved with an
# .ipynb (nbflow.jupyter.contents writes it; a run starts from them: nbflow.engine).
SAVED_WIDGETS = "nbflow_widgets"
WIDGETS_TAG = "nbflow-widgets"  # the cell that declares an .ipynb export's saved widgets
# In a cell's metadata["nbflow"] (nbflow lab): the language magic put before an export's cell.
ADDED_MAGIC = "magic_added"

# What marks a notebook that uses Spark: its warm kernel gets a session attached ahead of time.
SPARK_HINT = re.compile(r"\bspark\b|^\s*%sql\b|\bDeltaTable\b|\b_sqldf\b", re.MULTILINE)
# A notebook that runs others (whose cells mostly use Spark): the cluster's warm kernels serve
# its children too.
ORCHESTRATION_HINT = re.compile(r"\b(?:dbutils|notebookutils|mssparkutils)\.notebook\.run(?:Multiple)?\b")
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def source_header(suffix: str) -> str | None:
    """The first line of a Databricks source notebook with this file extension, if it can be one."""
    comment = SOURCE_COMMENTS.get(suffix.lower())
    return None if comment is None else f"{comment} Databricks notebook source"


def is_source_notebook(path: Path) -> bool:
    """True when ``path`` is a ``.py``, ``.sql``, ``.scala`` or ``.r`` file starting with the
    Databricks source header of its language."""
    header = source_header(path.suffix)
    if header is None or not path.is_file():
        return False
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return f.readline().lstrip("\ufeff").rstrip("\r\n").rstrip() == header


def resolve_notebook(reference: str | Path, base_dir: Path | None = None) -> Path:
    """Find the notebook file a reference names, the way Databricks paths name notebooks.

    Relative references resolve against ``base_dir`` (the calling notebook's folder). Workspace
    paths carry no extension, so ``./child`` finds ``child.ipynb`` or ``child.py``; a reference
    with its extension is taken as it is.
    """
    ref = Path(reference).expanduser()
    if not ref.is_absolute() and base_dir is not None:
        ref = base_dir / ref
    candidates = [ref]
    if ref.suffix.lower() not in NOTEBOOK_SUFFIXES:
        # A notebook first: ``./load`` means load.py even beside a plain file named ``load``.
        candidates = [ref.with_name(ref.name + suffix) for suffix in NOTEBOOK_SUFFIXES] + [ref]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise NotebookNotFound(f"notebook not found: {reference} (looked for {tried})")


def read_notebook(path: str | Path) -> NotebookNode:
    """Read an ``.ipynb`` or Databricks source notebook into an nbformat v4 notebook."""
    path = Path(path)
    if not path.exists():
        raise NotebookNotFound(f"notebook not found: {path}")
    if path.is_dir():
        raise NotebookFormatError(f"{path}: is a directory, not a notebook")
    suffix = path.suffix.lower()
    header = source_header(suffix)
    if suffix == ".ipynb":
        nb = _read_ipynb(path)
        adapt_databricks_ipynb(nb, str(path))
    elif header is not None:
        if not is_source_notebook(path):
            kind = {".py": "Python scripts", ".sql": "SQL scripts", ".scala": "Scala files", ".r": "R scripts"}[suffix]
            raise NotebookFormatError(
                f"{path}: a {suffix} notebook must start with the line '{header}' "
                f"(a Databricks source notebook); plain {kind} are not notebooks"
            )
        _refuse_language(LANGUAGE_NAMES[suffix], path)
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotebookFormatError(
                f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                "a Databricks source notebook is UTF-8"
            ) from None
        nb = parse_source(text, str(path), LANGUAGE_NAMES[suffix])
    else:
        raise NotebookFormatError(
            f"{path}: not a notebook (expected .ipynb or a Databricks source .py or .sql file)"
        )
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def _read_ipynb(path: Path) -> NotebookNode:
    import nbformat  # lazy: with its JSON schema validator, a tenth of a second of a plan's start

    try:
        with warnings.catch_warnings():
            # Cell ids are added below; nbformat's warning about them is noise for a reader.
            warnings.simplefilter("ignore")
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            _add_cell_ids(nb)
            nbformat.validate(nb)
    except Exception as exc:  # nbformat raises many unrelated types for bad documents
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotebookFormatError(f"{path}: not a valid .ipynb file ({reason})") from exc
    return cast("NotebookNode", nb)


def _add_cell_ids(nb: NotebookNode) -> None:
    """Notebooks older than nbformat 4.5 have no cell ids; give them some, as Jupyter does."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookFormatError("no cells")
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        nb["nbformat_minor"] = 5
    for cell in nb["cells"]:
        if isinstance(cell, dict) and not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:8]


def parse_source(text: str, name: str = "<source>", language: str = "python") -> NotebookNode:
    """Parse the text of a Databricks source notebook (``.py``, or ``.sql`` with
    ``language="sql"``) into a notebook. A SQL notebook's own cells become ``%sql`` cells."""
    comment = "--" if language == "sql" else "//" if language == "scala" else "#"
    header = f"{comment} Databricks notebook source"
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].rstrip() != header:
        raise NotebookFormatError(f"{name}: first line must be '{header}'")
    separator, magic, title = f"{comment} COMMAND ----------", f"{comment} MAGIC", f"{comment} DBTITLE"
    from nbformat import v4  # lazy: as in _read_ipynb

    nb: NotebookNode = v4.new_notebook()
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.strip().startswith(separator):
            chunks.append([])
        else:
            chunks[-1].append(line)
    for number, chunk in enumerate(chunks, start=1):
        cell = _source_cell(chunk, name, number, magic, title)
        if cell is None:
            continue
        if language == "sql" and cell.cell_type == "code" and not _magic_of(cell.source):
            cell.source = "%sql\n" + cell.source
        nb.cells.append(cell)
    if language != "python":
        nb.metadata[DATABRICKS_NOTEBOOK] = {"language": language, "notebookName": Path(name).stem}
    return nb


def _magic_of(source: str) -> str | None:
    """The Databricks magic (``%sql``, ``%python``...) a code cell's first non-blank line starts with."""
    for line in source.splitlines():
        if line.strip():
            word = line.strip().split(None, 1)[0]
            return word if word.startswith("%") else None
    return None


def _source_cell(chunk: list[str], name: str, number: int, magic_prefix: str = MAGIC_PREFIX,
                 title_prefix: str = TITLE_PREFIX) -> NotebookNode | None:
    from nbformat import v4  # lazy: as in _read_ipynb

    title = None
    body = _trim_blank(chunk)
    if body and body[0].startswith(title_prefix):
        # "# DBTITLE 1,Load the data": the digit says whether the title is shown.
        _, _, rest = body[0].partition(" ")
        title = rest.partition(",")[2].strip() or None
        body = _trim_blank(body[1:])
    if not body:
        return None
    magic_lines = [line for line in body if line.startswith(magic_prefix)]
    # A blank line inside a MAGIC cell is a blank line of the cell (some exports drop the prefix there).
    if magic_lines and len(magic_lines) != len([line for line in body if line.strip()]):
        bad = next(i for i, line in enumerate(body) if line.strip() and not line.startswith(magic_prefix))
        raise NotebookFormatError(
            f"{name}: cell {number}: line {bad + 1} of a MAGIC cell lacks the '{magic_prefix} ' prefix: "
            f"{body[bad][:60]!r}"
        )
    if magic_lines:
        body = [_strip_magic(line, magic_prefix) for line in body]
        # Some exports start a magic cell with empty "# MAGIC" lines before the magic itself.
        while body and not body[0].strip():
            body = body[1:]
        if not body:
            return None
        first = body[0].strip()
        if not first.startswith("%"):
            raise NotebookFormatError(
                f"{name}: cell {number}: a MAGIC cell must start with a magic such as %md, got {first[:40]!r}"
            )
        command = first.split(None, 1)[0]
        if command in ("%md", "%md-sandbox"):
            text = "\n".join([first[len(command):].strip(), *body[1:]]).strip("\n")
            cell = v4.new_markdown_cell(text)
        else:
            cell = v4.new_code_cell("\n".join(body))
    else:
        cell = v4.new_code_cell("\n".join(body))
    if title:
        cell.metadata["title"] = title
    return cast("NotebookNode", cell)


def _strip_magic(line: str, prefix: str = MAGIC_PREFIX) -> str:
    rest = line[len(prefix):]
    return rest[1:] if rest.startswith(" ") else rest


def _refuse_language(language: str, path: Path | str) -> None:
    """A notebook in a language the Python kernel cannot run: one line naming it, before any kernel."""
    shown = FOREIGN_LANGUAGES.get(language.lower())
    if shown is not None:
        raise NotebookFormatError(
            f"{path}: {'an' if shown == 'R' else 'a'} {shown} notebook: nbflow runs Python and SQL notebooks only "
            f"(its kernel is Python; run {shown} notebooks on Databricks)"
        )


def adapt_databricks_ipynb(nb: NotebookNode, name: str = "<notebook>", mark: bool = False) -> None:
    """Honour what a Databricks ``.ipynb`` export keeps in its metadata, in place (idempotent).

    The notebook's ``language`` (and a cell's own, where the export has one) says what a cell
    without a magic is: in a SQL notebook such a cell becomes a ``%sql`` cell. The widgets saved
    with the notebook are declared, with their defaults, by a cell put before the first one
    (tagged ``nbflow-widgets``, not counted among the notebook's cells); arguments still win.
    With ``mark``, each magic put in is noted in its cell's metadata, so that
    :func:`restore_databricks_ipynb` can give the export back as it was (``nbflow lab`` saving).
    """
    from nbformat import v4  # lazy: as in _read_ipynb

    meta = nb.metadata.get(DATABRICKS_NOTEBOOK)
    if not isinstance(meta, dict):
        return
    default = str(meta.get("language") or "python").lower()
    _refuse_language(default, name)
    for cell in nb.cells:
        if cell.cell_type != "code" or not isinstance(cell.source, str) or not cell.source.strip():
            continue
        if {"injected-parameters", WIDGETS_TAG} & set(cell.metadata.get("tags", [])):
            continue  # Python that papermill or nbflow wrote, whatever the notebook's language
        cell_meta = cell.metadata.get(DATABRICKS_CELL)
        language = str((cell_meta or {}).get("language") or default).lower() if isinstance(cell_meta, dict) \
            else default
        if language in ("sql", "scala", "r") and _magic_of(cell.source) is None:
            cell.source = f"%{language}\n{cell.source}"  # %scala and %r cells fail when run, naming the language
            if mark:
                cell.metadata.setdefault("nbflow", {})[ADDED_MAGIC] = language
    widgets = meta.get("widgets")
    if not isinstance(widgets, dict) or not widgets or any(WIDGETS_TAG in c.metadata.get("tags", []) for c in nb.cells):
        return
    lines = [line for entry in widgets.values() if (line := _widget_declaration(entry)) is not None]
    if lines:
        cell = v4.new_code_cell("\n".join(lines))
        cell.metadata["tags"] = [WIDGETS_TAG]
        nb.cells.insert(0, cell)


def restore_databricks_ipynb(nb: NotebookNode) -> None:
    """Undo :func:`adapt_databricks_ipynb` with ``mark``, in place: no widgets cell, and no magic
    it put in (one the user has since changed stays)."""
    nb.cells = [c for c in nb.cells if WIDGETS_TAG not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        ours = cell.metadata.get("nbflow")
        if not isinstance(ours, dict) or ADDED_MAGIC not in ours:
            continue
        magic = f"%{ours.pop(ADDED_MAGIC)}\n"
        if isinstance(cell.source, str) and cell.source.startswith(magic):
            cell.source = cell.source[len(magic):]
        if not ours:
            del cell.metadata["nbflow"]


def saved_widget_values(metadata: dict[str, Any]) -> dict[str, str]:
    """The widget values a notebook's metadata keeps: the current values of a Databricks export's
    widgets, then those set in nbflow's widget panel (``nbflow_widgets``), which win."""
    found = {name: entry["currentValue"] for name, entry in _export_widgets(metadata)
             if isinstance(entry.get("currentValue"), str)}
    ours = metadata.get(SAVED_WIDGETS)
    if isinstance(ours, dict):
        found.update({str(k): v for k, v in ours.items() if isinstance(v, str)})
    return found


def keep_widget_values(metadata: dict[str, Any], values: dict[str, str]) -> None:
    """Write widget values into a notebook's metadata: ``nbflow_widgets``, and the current value
    of each of a Databricks export's widgets, so that the workspace shows them after an import."""
    if not values:
        return
    metadata[SAVED_WIDGETS] = dict(values)
    for name, entry in _export_widgets(metadata):
        if name in values:
            entry["currentValue"] = values[name]


def _export_widgets(metadata: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each widget a Databricks export keeps in its metadata: its name, and its entry."""
    meta = metadata.get(DATABRICKS_NOTEBOOK)
    widgets = meta.get("widgets") if isinstance(meta, dict) else None
    found = []
    for key, entry in widgets.items() if isinstance(widgets, dict) else ():
        if isinstance(entry, dict):
            info = entry.get("widgetInfo")
            name = info.get("name") if isinstance(info, dict) else None
            found.append((str(name or key), entry))
    return found


def _widget_declaration(entry: object) -> str | None:
    """The ``dbutils.widgets`` call that declares one widget saved in an export's metadata."""
    if not isinstance(entry, dict):
        return None
    info = entry.get("widgetInfo") if isinstance(entry.get("widgetInfo"), dict) else entry.get("typedWidgetInfo")
    if not isinstance(info, dict) or not isinstance(info.get("name"), str):
        return None
    found = info.get("options")
    options: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = str(info.get("widgetType") or options.get("widgetType") or options.get("widgetDisplayType") or "text")
    kind = kind.lower() if kind.lower() in ("text", "dropdown", "combobox", "multiselect") else "text"
    default = info.get("defaultValue")
    default = "" if default is None else str(default)
    choices = [str(c) for c in options.get("choices") or [] if c is not None]
    label = info.get("label") if isinstance(info.get("label"), str) else None
    if kind == "text" or not choices:
        return f"dbutils.widgets.text({info['name']!r}, {default!r}, {label!r})"
    return f"dbutils.widgets.{kind}({info['name']!r}, {default!r}, {choices!r}, {label!r})"


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def parameters_cell_names(nb: NotebookNode) -> set[str]:
    """Names assigned at top level in the cell tagged ``parameters`` (papermill's convention)."""
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" not in cell.metadata.get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def environment_specs(nb: NotebookNode, name: str = "<notebook>") -> list[dict[str, Any]]:
    """The notebook's serverless environment specs: an ``.ipynb`` export's ``environmentMetadata``
    and each ``%environment`` cell's body (``"key": value`` lines, YAML), in that order. Only the
    ones that carry ``dependencies`` or a ``base_environment`` file matter; the others (what the
    UI writes: ``"client": "1"``, ``"base_environment": ""``) are left out."""

    specs: list[dict[str, Any]] = []
    meta = nb.metadata.get(DATABRICKS_NOTEBOOK)
    found = meta.get("environmentMetadata") if isinstance(meta, dict) else None
    if isinstance(found, dict):
        specs.append(dict(found))
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code" or _magic_of(cell.source) != "%environment":
            continue
        body = cell.source.strip().split("\n", 1)[1] if "\n" in cell.source.strip() else ""
        try:
            spec = yaml.safe_load(body) if body.strip() else None
        except yaml.YAMLError as exc:
            raise NotebookFormatError(f"{name}: cell {number}: not a valid %environment spec: "
                                      f"{str(exc).splitlines()[0]}") from None
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise NotebookFormatError(f"{name}: cell {number}: an %environment spec is \"key\": value lines")
        specs.append(spec)
    wanted = []
    for spec in specs:
        deps, base = spec.get("dependencies"), spec.get("base_environment")
        if deps is not None and not (isinstance(deps, str) or (
                isinstance(deps, list) and all(isinstance(d, (str, int, float)) for d in deps))):
            raise NotebookFormatError(f"{name}: environment spec: \"dependencies\" must be a list of pip "
                                      "requirement lines")
        if deps or (isinstance(base, str) and base.strip().endswith((".yaml", ".yml"))):
            wanted.append(spec)
    return wanted


def has_parameters_cell(nb: NotebookNode) -> bool:
    return any(
        cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []) for cell in nb.cells
    )
