"""Databricks cell magics in an IPython kernel.

Databricks marks a cell's language with a magic on its first line (``%sql``, ``%md``, ``%sh``,
``%python``, ``%scala``...) and the whole cell belongs to it. IPython spells that as a cell
magic (``%%sh``). An input transformer rewrites the first form into the second, so cells
exported from Databricks run unchanged. ``%run`` is replaced by Databricks' include: the other
notebook runs inline, in this namespace.
"""

from __future__ import annotations

import linecache
import re
import shlex
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
               "%environment": "environment"}
_ARG = re.compile(r"""\$(?P<name>[A-Za-z_][\w.\-]*)=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>\S*))""")


def databricks_cells(lines: list[str]) -> list[str]:
    """IPython input transformer: ``%sh`` on a cell's first line makes the cell a ``%%sh`` cell."""
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


def register(shell: Any, session: Session) -> None:
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

    shell.register_magic_function(run, "line", "run")
    shell.register_magic_function(pip, "line", "pip")
    shell.register_magic_function(environment, "cell", "environment")
    shell.register_magic_function(fs, "line", "fs")
    shell.register_magic_function(md, "cell", "md")
    shell.register_magic_function(sql, "cell", "sql")
    shell.register_magic_function(unsupported("scala"), "cell", "scala")
    shell.register_magic_function(unsupported("r"), "cell", "r")
    shell.input_transformers_cleanup.append(databricks_cells)


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
