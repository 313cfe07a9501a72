"""Fabric's ``notebookutils.notebook.runMultiple`` out of the kernel: ``python -m nbflow.run_multiple``.

The kernel side (:mod:`nbflow.runtime.fabric`) sends one JSON request on stdin::

    {"dag": <Fabric's DAG or a list of paths>, "caller": <the calling notebook's folder>,
     "output_dir": ..., "run_id": ..., "context": <the caller's context for its children>,
     "validate_only": false}

This process checks the DAG in Fabric's format (duplicate names, unknown dependencies, cycles,
notebooks that do not exist), runs it on nbflow's plan scheduler (each notebook in a worker
process with its own kernel) unless ``validate_only``, and prints one JSON line: ``{"error":
{"type", "message"}}`` for a DAG that cannot run, ``{"valid": true}`` for a valid one when only
validating, else ``{"notebooks": {name: {status, reason, exit_value, error, output, path}}}``.

So the kernel imports neither the scheduler nor the plan model (pydantic): it stays as light as
a plain kernel, and the scheduler's worker pool is owned by a process that can be interrupted
and that dies with its caller, as a ``dbutils.notebook.run`` child does (:mod:`nbflow.lifecycle`).
"""

from __future__ import annotations

import graphlib
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import lifecycle
from .errors import NbflowError, NotebookRuntimeError
from .notebooks import resolve_notebook
from .plan import Plan, Task
from .runs import SUCCEEDED, PlanRun
from .runtime.fabric import DAG_TIMEOUT_S
from .scheduler import Scheduler


@dataclass(frozen=True)
class Dag:
    """A Fabric DAG translated into a plan: task keys stand for the free-text activity names."""

    plan: Plan
    notebooks: dict[str, Path]  # task key -> notebook file
    names: dict[str, str]  # task key -> activity name
    concurrency: int


def parse(dag: Any, caller: Path) -> Dag:
    """Fabric's DAG (or a plain list of notebook paths) as a plan; raises NotebookRuntimeError
    (or NotebookNotFound) naming the activity at fault."""
    if isinstance(dag, list):  # a plain list of notebooks: all at once
        dag = {"activities": [{"name": str(p), "path": str(p)} for p in dag]}
    if not isinstance(dag, Mapping) or not isinstance(dag.get("activities"), list):
        raise NotebookRuntimeError("runMultiple expects {'activities': [...]} or a list of notebook paths")
    activities = dag["activities"]
    for index, activity in enumerate(activities):
        if not isinstance(activity, Mapping) or "name" not in activity or "path" not in activity:
            raise NotebookRuntimeError(f"runMultiple: activity #{index + 1} needs a 'name' and a 'path'")
    names = [a["name"] for a in activities]
    duplicates = sorted({str(n) for n in names if names.count(n) > 1})
    if duplicates:
        raise NotebookRuntimeError(f"runMultiple: duplicate activity names: {', '.join(duplicates)}")
    keys = {name: _key(str(name), i) for i, name in enumerate(names)}
    tasks, notebooks = [], {}
    for activity in activities:
        name = activity["name"]
        dependencies = activity.get("dependencies", [])
        unknown = [d for d in dependencies if d not in keys]
        if unknown:
            raise NotebookRuntimeError(f"runMultiple: activity {name!r} depends on unknown {unknown}")
        key = keys[name]
        notebooks[key] = resolve_notebook(activity["path"], caller)
        try:
            tasks.append(Task(
                task_key=key, notebook=str(notebooks[key]), parameters=dict(activity.get("args") or {}),
                depends_on=[keys[d] for d in dependencies],
                # Fabric bounds each cell (90 s by default); nbflow can only bound the notebook,
                # so only an explicit value applies, to the notebook as a whole.
                timeout_seconds=int(activity.get("timeoutPerCellInSeconds", 0)),
                max_retries=int(activity.get("retry", 0)),
                min_retry_interval_millis=int(activity.get("retryIntervalInSeconds", 0)) * 1000,
            ))
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise NotebookRuntimeError(f"runMultiple: activity {name!r}: {_first_line(exc)}") from None
    try:
        graphlib.TopologicalSorter({a["name"]: a.get("dependencies", []) for a in activities}).prepare()
    except graphlib.CycleError as exc:
        raise NotebookRuntimeError(f"runMultiple: dependency cycle: {' -> '.join(map(str, exc.args[1]))}") from None
    try:
        timeout = int(dag.get("timeoutInSeconds", DAG_TIMEOUT_S))
        plan = Plan(name="runMultiple", tasks=tasks, timeout_seconds=timeout)
        # Fabric's documented default is three times the cores; 0 means no limit.
        concurrency = int(dag.get("concurrency", 3 * (os.cpu_count() or 1))) or len(tasks)
    except (TypeError, ValueError) as exc:
        raise NotebookRuntimeError(f"runMultiple: {_first_line(exc)}") from None
    return Dag(plan, notebooks, {v: str(k) for k, v in keys.items()}, concurrency)


def _key(name: str, index: int) -> str:
    """A task key for an activity name (Fabric names are free text)."""
    cleaned = re.sub(r"[^\w\-]", "_", name)[:90] or "activity"
    return f"{cleaned}_{index}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run(dag: Dag, output_dir: Path, run_id: Any, context: Mapping[str, Any]) -> PlanRun:
    """Run the DAG's notebooks, in parallel where their dependencies allow."""
    return Scheduler(dag.plan, dag.notebooks, output_dir, run_id, mode="parallel", max_workers=dag.concurrency,
                     context=context).execute()


def outcomes(dag: Dag, run: PlanRun) -> dict[str, dict[str, Any]]:
    """Each activity's outcome, by name, in the DAG's order: what the kernel side needs to build
    Fabric's ``{name: {exitVal, exception}}``."""
    result: dict[str, dict[str, Any]] = {}
    for key, task_run in run.tasks.items():
        last = task_run.last
        result[dag.names[key]] = {
            "status": str(task_run.status),
            "succeeded": task_run.status in SUCCEEDED,
            "reason": task_run.reason,
            "exit_value": (last.result.exit_value if last and last.result else None) or "",
            "error": last.error.summary() if last and last.error else None,
            "output": last.output if last else None,
            "path": str(dag.notebooks[key]),
        }
    return result


def handle(request: Mapping[str, Any]) -> dict[str, Any]:
    """One request's reply (see the module's docstring)."""
    try:
        dag = parse(request.get("dag"), Path(request["caller"]))
    except NbflowError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    if request.get("validate_only"):
        return {"valid": True}
    plan_run = run(dag, Path(request["output_dir"]), request.get("run_id"), request.get("context") or {})
    return {"notebooks": outcomes(dag, plan_run)}


def main() -> int:
    request = json.loads(sys.stdin.read())
    # Started by a notebook's code (no lifeline): its parent's pid is watched instead, and its own
    # tag marks the workers and kernels it starts, for the clean-up of last resort.
    lifecycle.interruptible()
    tag = lifecycle.add_own_tag("run-multiple")
    lifecycle.watch(lifecycle.orphan_exit(tag, lifecycle.ORPHAN_GRACE_S))
    try:
        reply = handle(request)
    except KeyboardInterrupt:  # the caller's cell was interrupted: the scheduler stopped its workers
        return lifecycle.interrupted_exit_code()
    print(json.dumps(reply, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
