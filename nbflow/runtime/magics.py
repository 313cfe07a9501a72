"""Databricks cell magics in an IPython kernel.

Databricks marks a cell's language with a magic on its first line (``%sql``, ``%md``, ``%sh``,
``%python``, ``%scala``...) and the whole cell belongs to it. IPython spells that as a cell
magic (``%%sh``). An input transformer rewrites the first form into the second, so cells
exported from Databricks run unchanged. ``%run`` is replaced by Databricks' include: the other
notebook runs inline, in this namespace.
"""

from __future__ import annotations

import contextlib
import linecache
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.display import Markdown

from ..errors import NotebookRuntimeError
from .display import display
from .libraries import environment_dependencies, parse_environment
from .sql_cells import SqlCell, split_sql

__all__ = ["CELL_MAGICS", "databricks_cells", "include", "parse_run_line", "register", "split_sql"]

if TYPE_CHECKING:
    from .session import Session

# Magics that take the whole cell on Databricks, mapped to the IPython cell magic that runs it.
CELL_MAGICS = {"%md": "md", "%md-sandbox": "md", "%sh": "sh", "%sql": "sql", "%scala": "scala", "%r": "r",
               "%environment": "environment", "%skip": "skip"}
_ARG = re.compile(r"""\$(?P<name>[A-Za-z_][\w.\-]*)=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>\S*))""")


def databricks_cells(lines: list[str]) -> list[str]:
    """IPython input transformer: ``%sh`` on a cell's first line makes the cell a ``%%sh`` cell.

    Source text pasted from a Databricks ``.py`` export behaves as its cells would: ``# MAGIC``
    prefixes are taken off, and a paste of several cells (``# COMMAND ----------`` between them)
    runs each in turn, a magic cell through its magic."""
    chunks = _pasted_cells(lines)
    if len(chunks) > 1:
        code: list[str] = []
        for chunk in chunks:
            code += _as_python(_one_cell(chunk))
        return code
    return _one_cell(chunks[0])


_SEPARATOR = re.compile(r"^\s*# COMMAND -{5,}\s*$")
_MAGIC_LINE = re.compile(r"^# MAGIC(?: |$)")


def _pasted_cells(lines: list[str]) -> list[list[str]]:
    """The cells of a paste: split at ``# COMMAND ----------``, each cell's ``# MAGIC`` prefixes
    (and ``# DBTITLE`` line) taken off when every line of it is one."""
    chunks: list[list[str]] = [[]]
    for line in lines:
        if _SEPARATOR.match(line):
            chunks.append([])
        elif not (line.startswith("# Databricks notebook source") and not any(c for c in chunks if c)):
            chunks[-1].append(line)
    cells = []
    for chunk in chunks:
        body = chunk
        untitled = [line for line in chunk if not line.startswith("# DBTITLE")]
        filled = [line for line in untitled if line.strip()]
        if filled and all(_MAGIC_LINE.match(line) for line in filled):
            body = [_MAGIC_LINE.sub("", line, count=1) if line.strip() else line for line in untitled]
        if any(line.strip() for line in body) or len(chunks) == 1:
            cells.append(body)
    return cells or [[]]


def _as_python(cell: list[str]) -> list[str]:
    """One cell of a paste as Python: a ``%%magic`` cell becomes its ``run_cell_magic`` call."""
    if cell and cell[0].startswith("%%"):
        name, _, line = cell[0][2:].strip().partition(" ")
        body = "".join(cell[1:])
        return [f"get_ipython().run_cell_magic({name!r}, {line!r}, {body!r})\n"]
    return [line if line.endswith("\n") else line + "\n" for line in cell]


def _one_cell(lines: list[str]) -> list[str]:
    index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if index is None:
        return lines
    first = lines[index].strip()
    command, _, rest = first.partition(" ")
    if command == "%python":
        return lines[:index] + ([rest + "\n"] if rest else []) + lines[index + 1:]
    magic = CELL_MAGICS.get(command)
    if magic is None:
        return lines
    body = ([rest + "\n"] if rest.strip() else []) + lines[index + 1:]
    return [f"%%{magic}\n", *body]


def parse_run_line(line: str) -> tuple[str, dict[str, str]]:
    """Split a ``%run`` line into the notebook path and its ``$name="value"`` arguments."""
    args = {m["name"]: m["dq"] if m["dq"] is not None else m["sq"] if m["sq"] is not None else m["bare"]
            for m in _ARG.finditer(line)}
    rest = _ARG.sub("", line).strip()
    if not rest:
        raise NotebookRuntimeError("%run needs a notebook path, e.g. %run ./helpers")
    parts = shlex.split(rest)
    if len(parts) != 1:
        raise NotebookRuntimeError(f"%run takes one notebook path, got {rest!r} (quote paths with spaces)")
    return parts[0], args


def register(shell: Any, session: Session) -> Callable[[], None]:
    """Register the Databricks magics and the cell transformer in ``shell``; returns what undoes
    it (``%unload_ext nbflow``), giving back IPython's own ``%run`` and ``%pip``."""

    def run(line: str) -> None:
        """%run ./notebook $name="value": run another notebook inline, in this namespace."""
        path, args = parse_run_line(line)
        include(shell, session, path, args)

    def md(line: str, cell: str) -> None:
        display(Markdown(cell))

    def fs(line: str) -> Any:
        """%fs ls /path: dbutils.fs commands written as a magic."""
        words = shlex.split(line)
        if not words:
            raise NotebookRuntimeError("%fs needs a command, e.g. %fs ls /")
        command, args = words[0], words[1:]
        method = getattr(session.dbutils.fs, command, None)
        if method is None or command.startswith("_"):
            raise NotebookRuntimeError(f"%fs {command}: unknown command (ls, mkdirs, put, head, cp, mv, rm)")
        flags = {a.lstrip("-").split("=")[0]: True for a in args if a.startswith("-")}
        positional = [a for a in args if not a.startswith("-")]
        if command in ("cp", "mv", "rm") and ("r" in flags or "recurse" in flags):
            return method(*positional, recurse=True)
        return method(*positional)

    sql_cells = SqlCell(session)

    def sql(line: str, cell: str) -> Any:
        """%sql: run the cell's statements (widgets and variables substituted or bound, see
        :mod:`nbflow.runtime.sql_cells`); the last result is displayed and kept as ``_sqldf``."""
        result = sql_cells.run(cell)
        if result is None:
            return None
        shell.user_ns["_sqldf"] = result
        if len(result.columns) > 0:
            display(result)
        return None

    def unsupported(language: str) -> Any:
        def magic(line: str, cell: str) -> None:
            raise NotebookRuntimeError(
                f"%{language} cells cannot run in nbflow's local Python kernel; "
                "move this logic to Python, or run the notebook on Databricks"
            )
        return magic

    def pip(line: str) -> None:
        """%pip install|uninstall|list|show|freeze ...: pip on the run's own environment
        (notebook-scoped libraries; see nbflow.runtime.libraries), never nbflow's."""
        session.libraries.pip(line)

    def environment(line: str, cell: str) -> None:
        """%environment: a serverless environment spec. Its dependencies were installed before the
        first cell (see nbflow.runtime.kernel.prepare_environment); a spec seen only now (a %run
        include's) is installed now."""
        spec = parse_environment(cell)
        session.libraries.environment(environment_dependencies(spec, session.dbutils.fs.local_path))

    def skip(line: str, cell: str) -> None:
        """%skip: the cell is skipped when the notebook runs (Databricks' Run All, and jobs)."""

    ours: list[tuple[Any, str, str]] = [
        (run, "line", "run"), (pip, "line", "pip"), (environment, "cell", "environment"), (fs, "line", "fs"),
        (md, "cell", "md"), (sql, "cell", "sql"), (unsupported("scala"), "cell", "scala"),
        (unsupported("r"), "cell", "r"), (skip, "cell", "skip"),
    ]
    table = shell.magics_manager.magics
    previous = [(kind, name, table[kind].get(name)) for _, kind, name in ours]
    for function, kind, name in ours:
        shell.register_magic_function(function, kind, name)
    shell.input_transformers_cleanup.append(databricks_cells)

    def undo() -> None:
        for kind, name, before in previous:
            if before is None:
                table[kind].pop(name, None)
            else:
                table[kind][name] = before
        with contextlib.suppress(ValueError):
            shell.input_transformers_cleanup.remove(databricks_cells)

    return undo


def include(shell: Any, session: Session, path: str, args: dict[str, str]) -> None:
    """Run the code cells of another notebook in the shell's namespace (Databricks ``%run``)."""
    from ..notebooks import read_notebook, resolve_notebook  # lazy: nbformat is heavy (kernel start-up)

    caller = session.current_notebook()
    target = resolve_notebook(path, Path(caller).parent)
    nb = read_notebook(target)
    with session.including(str(target)), session.dbutils.widgets.bound(args):
        for number, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            code = shell.transform_cell(cell.source)
            filename = f"{target} [cell {number}]"
            # Tracebacks then show the included notebook's lines.
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            exec(compile(code, filename, "exec"), shell.user_ns)
