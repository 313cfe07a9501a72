"""Microsoft Fabric / Synapse ``notebookutils`` (formerly ``mssparkutils``): run, exit, runMultiple.

``runMultiple`` runs a DAG of notebooks with nbflow's plan scheduler (each notebook in its own
worker process and kernel), in Fabric's DAG format and with Fabric's return shape. The DAG is
checked and run out of the kernel, by ``python -m nbflow.run_multiple``: the kernel imports
neither the scheduler nor the plan model. Differences
from Fabric, by necessity or choice (documented in the README): ``timeoutPerCellInSeconds`` bounds
each notebook as a whole, and arguments reach both the parameters cell and the widgets.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    NbflowError,
    NotebookFormatError,
    NotebookNotFound,
    NotebookRuntimeError,
    RunMultipleFailed,
    WorkflowException,
)
from ..project import processed_dir
from . import child_process
from .notebook import CHILD_GRACE_S

if TYPE_CHECKING:
    from .session import Session

FABRIC_RUN_TIMEOUT_S = 90  # notebookutils.notebook.run's documented default
DAG_TIMEOUT_S = 43200  # runMultiple's documented default for the whole DAG (12 hours)
# How long a stopped runMultiple gets to stop its notebooks: the scheduler gives running attempts
# 30 s to save and stop (STOP_GRACE_S), then kills them; the rest is for its own exit.
RUN_MULTIPLE_STOP_GRACE_S = 45.0


class FabricNotebook:
    def __init__(self, session: Session) -> None:
        self._session = session

    def exit(self, value: str) -> None:
        """End this notebook; ``value`` is what ``run`` returns to the caller."""
        self._session.dbutils.notebook.exit(value)

    def run(self, path: str, timeout_seconds: int = FABRIC_RUN_TIMEOUT_S,
            arguments: Mapping[str, Any] | None = None, workspace: str = "") -> str:
        """Run a notebook and return its exit value ("" when it never exits)."""
        if workspace:
            raise NotebookRuntimeError("notebookutils.notebook.run: other workspaces are not reachable locally")
        return self._session.dbutils.notebook.run(path, timeout_seconds, arguments)

    def validateDAG(self, dag: Any) -> bool:
        """True for a valid DAG; raises on duplicate names, unknown dependencies or cycles."""
        self._call(dag, validate_only=True)
        return True

    def runMultiple(self, dag: Any, config: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Run notebooks, in parallel where their dependencies allow; ``{name: {exitVal, exception}}``."""
        lakehouse = self._session.lakehouse
        lakehouse.push()  # the notebooks see the tables this one wrote so far
        try:
            outcomes = self._call(dag, validate_only=False)["notebooks"]
        finally:
            lakehouse.pull()  # and this notebook sees theirs
        result: dict[str, dict[str, Any]] = {}
        for name, outcome in outcomes.items():
            exception = None
            if not outcome["succeeded"]:
                error = outcome["error"]
                exception = WorkflowException(
                    f"NotebookExecutionException: {outcome['status']}: {name}"
                    + (f": {error.get('ename')}: {error.get('evalue')}" if error else f" ({outcome['reason']})"),
                    path=outcome["path"], status=outcome["status"], error=error, output_path=outcome["output"],
                )
            result[name] = {"exitVal": outcome["exit_value"], "exception": exception}
        failed = [name for name, r in result.items() if r["exception"] is not None]
        if failed:
            raise RunMultipleFailed(f"runMultiple: {len(failed)} notebook(s) failed: {', '.join(failed)}", result)
        return result

    def _call(self, dag: Any, validate_only: bool) -> dict[str, Any]:
        """Hand the DAG to ``python -m nbflow.run_multiple`` (which checks it and runs it on the
        plan scheduler) and return its reply; a DAG it refuses raises its error here."""
        ctx = self._session.context
        if ctx.output_path:  # next to the caller's executed notebook, as its children are
            out = Path(ctx.output_path).with_suffix(".runMultiple")
        else:
            out = processed_dir(ctx.project_dir) / (ctx.run_id or "runMultiple")
        request = {
            "dag": dag,
            "caller": str(Path(ctx.notebook_path).parent),
            "output_dir": str(out),
            "run_id": ctx.run_id,
            "context": ctx.for_child(self._session.redactor.values()),
            "validate_only": validate_only,
        }
        timeout = _dag_timeout(dag)
        backstop = None if validate_only or not timeout else timeout + CHILD_GRACE_S
        outcome = child_process.call("nbflow.run_multiple", request, ctx.python, backstop,
                                     stop_grace=RUN_MULTIPLE_STOP_GRACE_S)
        if outcome.timed_out:
            raise NotebookRuntimeError(f"runMultiple: still running {CHILD_GRACE_S} s after its timeout: stopped")
        reply = outcome.reply
        if reply is None:
            raise NotebookRuntimeError(f"runMultiple failed: {outcome.stderr_tail}")
        if "error" in reply:
            raise ERRORS.get(reply["error"]["type"], NotebookRuntimeError)(reply["error"]["message"])
        return reply


# The errors a DAG can be refused with, raised in the kernel as the process reported them.
ERRORS: dict[str, type[NbflowError]] = {
    cls.__name__: cls for cls in (NotebookRuntimeError, NotebookNotFound, NotebookFormatError)
}


def _dag_timeout(dag: Any) -> int:
    """The DAG's own timeout for the backstop (its process checks the value; 0: none)."""
    try:
        return int(dag.get("timeoutInSeconds", DAG_TIMEOUT_S)) if isinstance(dag, Mapping) else DAG_TIMEOUT_S
    except (TypeError, ValueError):
        return DAG_TIMEOUT_S


class NotebookUtilsModule(types.ModuleType):
    """``notebookutils`` (and ``mssparkutils``): ``notebook`` here; ``fs``/``credentials`` as dbutils'."""

    def __init__(self, name: str, session: Session) -> None:
        super().__init__(name, "nbflow's local notebookutils")
        self.notebook = FabricNotebook(session)
        self.fs = session.dbutils.fs


def install(session: Session, namespace: dict[str, Any]) -> dict[str, Any]:
    """Make ``notebookutils``/``mssparkutils`` importable and return them for the namespace."""
    utils = NotebookUtilsModule("notebookutils", session)
    utils.mssparkutils = utils  # type: ignore[attr-defined]  # from notebookutils import mssparkutils
    sys.modules.setdefault("notebookutils", utils)
    sys.modules.setdefault("mssparkutils", utils)
    return {"notebookutils": utils, "mssparkutils": utils}
