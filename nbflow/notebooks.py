"""Reading notebooks: Jupyter ``.ipynb`` files and Databricks source files, into nbformat.

A Databricks source notebook is a ``.py`` file whose first line is exactly
``# Databricks notebook source``; cells are separated by ``# COMMAND ----------`` lines, cells
in another language carry ``# MAGIC `` on every line (the first one naming the magic, e.g.
``# MAGIC %md``), and ``# DBTITLE 0,Title`` lines give a cell its title.

Magic cells are kept in Databricks' own syntax (``%sql`` on the first line, then the body) so
the same cell text runs whether it came from a source file or from an ``.ipynb`` exported by
Databricks: the kernel runtime (:mod:`nbflow.runtime.magics`) turns that syntax into IPython
magics. Only ``%md`` cells become markdown cells, because they are not code.
"""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path
from typing import cast

import nbformat
from nbformat import NotebookNode

from .errors import NotebookFormatError, NotebookNotFound

SOURCE_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
MAGIC_PREFIX = "# MAGIC"
TITLE_PREFIX = "# DBTITLE"
NOTEBOOK_SUFFIXES = (".ipynb", ".py")

# What marks a notebook that uses Spark: its warm kernel gets a session attached ahead of time.
SPARK_HINT = re.compile(r"\bspark\b|^\s*%sql\b|\bDeltaTable\b|\b_sqldf\b", re.MULTILINE)
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def is_source_notebook(path: Path) -> bool:
    """True when ``path`` is a ``.py`` file starting with the Databricks source header."""
    if path.suffix.lower() != ".py" or not path.is_file():
        return False
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return f.readline().rstrip("\r\n").rstrip() == SOURCE_HEADER


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
    if suffix == ".ipynb":
        nb = _read_ipynb(path)
    elif suffix == ".py":
        if not is_source_notebook(path):
            raise NotebookFormatError(
                f"{path}: a .py notebook must start with the line '{SOURCE_HEADER}' "
                "(a Databricks source notebook); plain Python scripts are not notebooks"
            )
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotebookFormatError(
                f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                "a Databricks source notebook is UTF-8"
            ) from None
        nb = parse_source(text, str(path))
    else:
        raise NotebookFormatError(
            f"{path}: not a notebook (expected .ipynb or a Databricks source .py file)"
        )
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def _read_ipynb(path: Path) -> NotebookNode:
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
    return cast(NotebookNode, nb)


def _add_cell_ids(nb: NotebookNode) -> None:
    """Notebooks older than nbformat 4.5 have no cell ids; give them some, as Jupyter does."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookFormatError("no cells")
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        nb["nbformat_minor"] = 5
    for cell in nb["cells"]:
        if isinstance(cell, dict) and not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:8]


def parse_source(text: str, name: str = "<source>") -> NotebookNode:
    """Parse the text of a Databricks source notebook (``.py``) into a notebook."""
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != SOURCE_HEADER:
        raise NotebookFormatError(f"{name}: first line must be '{SOURCE_HEADER}'")
    nb: NotebookNode = nbformat.v4.new_notebook()
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.strip().startswith(CELL_SEPARATOR):
            chunks.append([])
        else:
            chunks[-1].append(line)
    for number, chunk in enumerate(chunks, start=1):
        cell = _source_cell(chunk, name, number)
        if cell is not None:
            nb.cells.append(cell)
    return nb


def _source_cell(chunk: list[str], name: str, number: int) -> NotebookNode | None:
    title = None
    body = _trim_blank(chunk)
    if body and body[0].startswith(TITLE_PREFIX):
        # "# DBTITLE 1,Load the data": the digit says whether the title is shown.
        _, _, rest = body[0].partition(" ")
        title = rest.partition(",")[2].strip() or None
        body = _trim_blank(body[1:])
    if not body:
        return None
    magic_lines = [line for line in body if line.startswith(MAGIC_PREFIX)]
    if magic_lines and len(magic_lines) != len(body):
        bad = next(i for i, line in enumerate(body) if not line.startswith(MAGIC_PREFIX))
        raise NotebookFormatError(
            f"{name}: cell {number}: line {bad + 1} of a MAGIC cell lacks the '{MAGIC_PREFIX} ' prefix: "
            f"{body[bad][:60]!r}"
        )
    if magic_lines:
        body = [_strip_magic(line) for line in body]
        first = body[0].strip()
        if not first.startswith("%"):
            raise NotebookFormatError(
                f"{name}: cell {number}: a MAGIC cell must start with a magic such as %md, got {first[:40]!r}"
            )
        command = first.split(None, 1)[0]
        if command in ("%md", "%md-sandbox"):
            text = "\n".join([first[len(command):].strip(), *body[1:]]).strip("\n")
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(body))
    else:
        cell = nbformat.v4.new_code_cell("\n".join(body))
    if title:
        cell.metadata["title"] = title
    return cast(NotebookNode, cell)


def _strip_magic(line: str) -> str:
    rest = line[len(MAGIC_PREFIX):]
    return rest[1:] if rest.startswith(" ") else rest


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def parameters_cell_names(nb: NotebookNode) -> set[str]:
    """Names assigned at top level in the cell tagged ``parameters`` (papermill's convention)."""
    import ast

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


def has_parameters_cell(nb: NotebookNode) -> bool:
    return any(
        cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []) for cell in nb.cells
    )


def uses_spark(path: str | Path) -> bool:
    """Whether a notebook mentions Spark (``spark``, ``%sql``, ``DeltaTable``): a hint, not a proof.

    A notebook that reaches Spark only through a ``%run`` include or a child still works; its
    session is attached when first used instead of ahead of time.
    """
    try:
        nb = read_notebook(path)
    except (NotebookFormatError, NotebookNotFound, OSError):
        return False
    return any(SPARK_HINT.search(cell.source) for cell in nb.cells)


def to_source(nb: NotebookNode) -> str:
    """A notebook as Databricks source text, the inverse of :func:`parse_source` (what a workspace
    exports as ``SOURCE``): markdown and magic cells become ``# MAGIC`` lines."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type not in ("code", "markdown"):
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        lines = source.splitlines()
        if cell.cell_type == "markdown":
            lines = ["%md", *lines]
        if lines and lines[0].lstrip().startswith("%"):
            lines = [f"{MAGIC_PREFIX} {line}" if line else MAGIC_PREFIX for line in lines]
        title = cell.metadata.get("title")
        cells.append("\n".join(([f"{TITLE_PREFIX} 1,{title}"] if title else []) + lines))
    return SOURCE_HEADER + "\n" + f"\n\n{CELL_SEPARATOR}\n\n".join(cells) + "\n"
