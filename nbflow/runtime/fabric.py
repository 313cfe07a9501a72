"""Microsoft Fabric / Synapse ``notebookutils`` (formerly ``mssparkutils``): run, exit, runMultiple.

``runMultiple`` runs a DAG of notebooks with nbflow's plan scheduler (each notebook in its own
worker process and kernel), in Fabric's DAG format and with Fabric's return shape. Differences
from Fabric, by necessity or choice (documented in the README): ``timeoutPerCellInSeconds`` bounds
each notebook as a whole, and arguments reach both the parameters cell and the widgets.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotebookRuntimeError, WorkflowException
from ..project import processed_dir

if TYPE_CHECKING:
    from .session import Session

FABRIC_RUN_TIMEOUT_S = 90  # notebookutils.notebook.run's documented default


class RunMultipleFailed(NotebookRuntimeError):
    """One or more notebooks of ``runMultiple`` failed; ``result`` holds every notebook's outcome."""

    def __init__(self, message: str, result: dict[str, dict[str, Any]]) -> None:
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


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
        self._plan(dag)
        return True

    def runMultiple(self, dag: Any, config: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Run notebooks, in parallel where their dependencies allow; ``{name: {exitVal, exception}}``."""
        from ..scheduler import SUCCEEDED, Scheduler

        plan, notebooks, names, concurrency = self._plan(dag)
        ctx = self._session.context
        if ctx.output_path:  # next to the caller's executed notebook, as its children are
            out = Path(ctx.output_path).with_suffix(".runMultiple")
        else:
            out = processed_dir(ctx.project_dir) / (ctx.run_id or "runMultiple")
        lakehouse = self._session.lakehouse
        lakehouse.push()
        try:
            run = Scheduler(plan, notebooks, out, ctx.run_id, mode="parallel", max_workers=concurrency,
                            context=ctx.for_child(self._session.redactor.values())).execute()
        finally:
            lakehouse.pull()
        result: dict[str, dict[str, Any]] = {}
        for key, task_run in run.tasks.items():
            last = task_run.last
            exit_value = (last.result.exit_value if last and last.result else None) or ""
            exception = None
            if task_run.status not in SUCCEEDED:
                error = (last.error if last else None) or {}
                exception = WorkflowException(
                    f"NotebookExecutionException: {task_run.status}: {names[key]}"
                    + (f": {error.get('ename')}: {error.get('evalue')}" if error else f" ({task_run.reason})"),
                    path=str(notebooks[key]), status=task_run.status, error=error or None,
                    output_path=last.output if last else None,
                )
            result[names[key]] = {"exitVal": exit_value, "exception": exception}
        failed = [name for name, r in result.items() if r["exception"] is not None]
        if failed:
            raise RunMultipleFailed(f"runMultiple: {len(failed)} notebook(s) failed: {', '.join(failed)}", result)
        return result

    def _plan(self, dag: Any) -> tuple[Any, dict[str, Path], dict[str, str], int]:
        from ..notebooks import resolve_notebook
        from ..plan import Plan, Task

        if isinstance(dag, list):  # a plain list of notebooks: all at once
            dag = {"activities": [{"name": str(p), "path": str(p)} for p in dag]}
        if not isinstance(dag, Mapping) or not isinstance(dag.get("activities"), list):
            raise NotebookRuntimeError("runMultiple expects {'activities': [...]} or a list of notebook paths")
        activities = dag["activities"]
        names = [a.get("name") for a in activities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise NotebookRuntimeError(f"runMultiple: duplicate activity names: {', '.join(map(str, duplicates))}")
        keys = {name: _key(str(name), i) for i, name in enumerate(names)}
        caller = Path(self._session.context.notebook_path).parent
        tasks, notebooks = [], {}
        timeout = int(dag.get("timeoutInSeconds", 43200))
        for activity in activities:
            name = activity["name"]
            unknown = [d for d in activity.get("dependencies", []) if d not in keys]
            if unknown:
                raise NotebookRuntimeError(f"runMultiple: activity {name!r} depends on unknown {unknown}")
            key = keys[name]
            notebooks[key] = resolve_notebook(activity["path"], caller)
            tasks.append(Task(
                task_key=key, notebook=str(notebooks[key]), parameters=dict(activity.get("args") or {}),
                depends_on=[keys[d] for d in activity.get("dependencies", [])],
                # Fabric bounds each cell (90 s by default); nbflow can only bound the notebook,
                # so only an explicit value applies, to the notebook as a whole.
                timeout_seconds=int(activity.get("timeoutPerCellInSeconds", 0)),
                max_retries=int(activity.get("retry", 0)),
                min_retry_interval_millis=int(activity.get("retryIntervalInSeconds", 0)) * 1000,
            ))
        plan = Plan(name="runMultiple", tasks=tasks, timeout_seconds=timeout)
        try:
            plan.order()
        except Exception as exc:  # graphlib.CycleError: name the cycle in activity names
            reverse = {v: k for k, v in keys.items()}
            cycle = " -> ".join(str(reverse.get(k, k)) for k in getattr(exc, "args", [None, []])[1])
            raise NotebookRuntimeError(f"runMultiple: dependency cycle: {cycle}") from None
        # Fabric's documented default is three times the cores; 0 means no limit.
        concurrency = int(dag.get("concurrency", 3 * (os.cpu_count() or 1))) or len(tasks)
        return plan, notebooks, {v: str(k) for k, v in keys.items()}, concurrency


def _key(name: str, index: int) -> str:
    """A task key for an activity name (Fabric names are free text)."""
    cleaned = re.sub(r"[^\w\-]", "_", name)[:90] or "activity"
    return f"{cleaned}_{index}"


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
