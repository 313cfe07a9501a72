"""``dbutils.notebook``: ``exit`` ends the notebook with a value, ``run`` runs a child notebook.

``run`` runs the child in a fresh kernel, as Databricks starts an ephemeral job: the child shares
the machine (files, the local cluster) but not the caller's Python namespace. When the project's
cluster runs, the child goes to a warm kernel of its pool service (:mod:`nbflow.pool_wire`);
otherwise to a separate process (``python -m nbflow.task_process``, given a
:class:`nbflow.task_spec.TaskSpec`) that starts a kernel for it. Either way the call only waits
on a socket or a pipe, so concurrent ``run`` calls from threads stay independent of the
kernel's own event loop.
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import pool_wire
from ..errors import WorkflowException
from ..params import Param, widget_string
from ..runs import CellError
from ..task_spec import TaskSpec
from . import child_process
from .context import RunContext
from .entry_point import EntryPoint
from .help import show
from .jobs import warn_if_redacted
from .secrets import without_secrets

if TYPE_CHECKING:
    from .session import Session

EXIT_LIMIT_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 16  # Databricks documents no limit; this stops a notebook that runs itself.
# Extra seconds the caller waits for a child process beyond its own timeout before killing it:
# the child stops its kernel and saves its notebook itself when it times out.
CHILD_GRACE_S = 60


class NotebookExit(BaseException):
    """Raised by ``dbutils.notebook.exit``; a BaseException so ``except Exception`` does not stop it."""

    def __init__(self, value: str, session: Session | None = None) -> None:
        super().__init__(value)
        self.value = value
        self.session = session

    def _render_traceback_(self) -> list[str]:
        # IPython calls this when the exception ends a cell: the exit took effect.
        shown, truncated = truncate_exit(self.value)
        if self.session is not None:
            self.session.exit_value, self.session.exit_truncated = shown, truncated
        if len(shown) > 1000:
            shown = shown[:1000] + "..."
        return [f"Notebook exited: {shown}"]


def truncate_exit(value: str) -> tuple[str, bool]:
    """Keep the first 5 MB of an exit value, as the Jobs API does."""
    data = value.encode("utf-8")
    if len(data) <= EXIT_LIMIT_BYTES:
        return value, False
    return data[:EXIT_LIMIT_BYTES].decode("utf-8", errors="ignore"), True


class NotebookUtils:
    """Run other notebooks and end this one with a value."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._count = 0
        # getDbutils().notebook().getContext(): the notebook's path, user, run ids (entry_point.py).
        self.entry_point = EntryPoint(session)

    def help(self, method: str = "") -> None:
        show("dbutils.notebook", self, method)
        if not method:
            print("  entry_point.getDbutils().notebook().getContext(): notebookPath(), tags(), userName(), "
                  "currentRunId(), ... (see the README)")

    def exit(self, value: str) -> None:
        """End this notebook successfully; ``value`` is its exit value (returned by ``run``)."""
        if not isinstance(value, str):
            raise TypeError(
                f"dbutils.notebook.exit expects a string, got {type(value).__name__}; "
                "use json.dumps(...) for structured values"
            )
        warn_if_redacted("the exit value", value, self._session.redactor.deep)
        raise NotebookExit(value, self._session)

    def run(
        self,
        path: str,
        timeout_seconds: int = 0,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """Run a notebook in a fresh kernel and return its exit value ("" if it never exits).

        ``arguments`` become the child's widget values. ``timeout_seconds`` 0 means no timeout.
        Raises WorkflowException when the child fails or times out.
        """
        from ..notebooks import resolve_notebook  # lazy: keeps kernel start-up light

        if not isinstance(timeout_seconds, int) or timeout_seconds < 0:
            raise TypeError(f"timeout_seconds must be a non-negative int, got {timeout_seconds!r}")
        args = {str(k): widget_string(v) for k, v in (arguments or {}).items()}
        ctx = self._session.context
        if ctx.depth + 1 > MAX_DEPTH:
            raise WorkflowException(
                f"com.databricks.WorkflowException: notebook workflows nested deeper than {MAX_DEPTH} levels "
                f"(running {path})",
                path=path,
            )
        # Relative to the notebook the run belongs to, as Databricks resolves it from the
        # notebook context: the same answer from any thread, inside a %run include or not.
        caller = Path(ctx.notebook_path)
        try:
            child = resolve_notebook(path, caller.parent)
        except Exception as exc:
            raise WorkflowException(
                f"com.databricks.WorkflowException: com.databricks.NotebookExecutionException: FAILED: {exc}",
                path=path,
            ) from None
        with self._lock:
            self._count += 1
            number = self._count
        output_path = None
        if ctx.output_path:
            out = Path(ctx.output_path)
            output_path = str(out.with_name(out.stem + ".children") / f"{number:03d}-{child.stem}.ipynb")
        spec = TaskSpec(
            notebook=str(child),
            parameters={name: Param(value, "dbutils.notebook.run") for name, value in args.items()},
            timeout=timeout_seconds or None,
            output_path=output_path,
            context=RunContext(**ctx.for_child(self._session.redactor.values())),
        )
        lakehouse = self._session.lakehouse
        lakehouse.push()  # the child sees the tables this notebook wrote so far
        try:
            result = _run_child(spec, timeout_seconds)
        finally:
            lakehouse.pull()  # and this notebook sees the child's
        status = result.get("status")
        if ctx.interactive and result.get("output"):
            _show_child(str(result["output"]), str(status))
        if status == "SUCCESS":
            return str(result.get("exit_value") or "")
        error = CellError.from_json(result["error"]) if result.get("error") else None
        where = ""
        if error:
            where = f" at cell {error.cell_index}: {error.ename}: {error.evalue}"
        reason = "FAILED" if status != "TIMEDOUT" else f"TIMEDOUT after {timeout_seconds} s"
        raise WorkflowException(
            f"com.databricks.WorkflowException: com.databricks.NotebookExecutionException: {reason}: "
            f"{child.name}{where} (executed notebook: {result.get('output')})",
            path=str(child),
            status=str(status),
            error=None if error is None else error.summary(),
            output_path=result.get("output"),
        )


def _show_child(output: str, status: str) -> None:
    """Where a child run by hand was saved, as Databricks links its "Notebook job" run: a link
    in a notebook front end, the path in a terminal."""
    from IPython.display import display  # lazy: only an interactive session shows it

    link = Path(output)
    shown = os.path.relpath(link)  # a front end opens links relative to the notebook's folder
    bundle = {
        "text/html": f'executed notebook: <a href="{html.escape(shown)}" target="_blank">'
                     f"{html.escape(link.name)}</a> ({html.escape(status)})",
        "text/plain": f"executed notebook: {link} ({status})",
    }
    display(bundle, raw=True, metadata={"nbflow": {"child": str(link), "status": status}})


def _run_child(spec: TaskSpec, timeout_seconds: int) -> dict[str, Any]:
    backstop = timeout_seconds + CHILD_GRACE_S if timeout_seconds else None
    # On a warm kernel of the cluster's pool service when it runs (the notebook's environment
    # goes with it); else in a process of its own, with a kernel it starts.
    context = dataclasses.replace(spec.context, environ=without_secrets())
    try:
        done = pool_wire.run(spec.context.project_dir, dataclasses.replace(spec, context=context).to_json(), backstop)
    except pool_wire.Lost as exc:
        return {"status": "FAILED", "output": spec.output_path,
                "error": CellError(None, "ChildProcessError", str(exc)).summary()}
    if done is not None:
        return done
    outcome = child_process.call("nbflow.task_process", spec.to_json(), spec.context.python or sys.executable, backstop)
    if outcome.timed_out:
        return {"status": "TIMEDOUT", "output": spec.output_path, "error": None}
    if outcome.reply is None:
        return {
            "status": "FAILED",
            "output": spec.output_path,
            "error": CellError(None, "ChildProcessError", outcome.stderr_tail).summary(),
        }
    return outcome.reply
