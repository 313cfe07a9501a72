"""``{{...}}`` references in task parameters: checked when a plan loads, evaluated when a task starts.

``{{job.id}}``, ``{{job.name}}``, ``{{job.run_id}}``, ``{{job.repair_count}}``,
``{{job.start_time.<field>}}``, ``{{job.parameters.<name>}}``, ``{{tasks.<key>.values.<name>}}``
and ``{{tasks.<key>.exit_value}}``, as on Databricks. Checking and evaluating read the same
tables of names (:data:`JOB_FIELDS`, :data:`START_TIME_FIELDS`), so that a reference a plan
passes with is one a run can replace.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .model import Plan

if TYPE_CHECKING:  # the run model imports plans for its own annotations only: no cycle at run time
    from ..runs import PlanRun

REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
JOB_FIELDS = ("id", "name", "run_id", "repair_count")
_START_TIME: dict[str, Callable[[dt.datetime], str]] = {
    "iso_date": lambda t: t.date().isoformat(), "iso_datetime": lambda t: t.isoformat(timespec="seconds"),
    "year": lambda t: str(t.year), "month": lambda t: str(t.month), "day": lambda t: str(t.day),
    "hour": lambda t: str(t.hour), "minute": lambda t: str(t.minute), "second": lambda t: str(t.second),
    "timestamp_ms": lambda t: str(int(t.timestamp() * 1000)), "is_weekday": lambda t: str(t.weekday() < 5).lower(),
}
START_TIME_FIELDS = tuple(_START_TIME)


# -- checking ------------------------------------------------------------------------------------
def check_references(plan: Plan, graph_ok: bool, report: Callable[[tuple[Any, ...], str], None]) -> None:
    """Report each bad reference in the plan's task parameters at ``tasks[i].parameters.<name>``.

    A ``{{tasks.<key>...}}`` reference must name a task upstream of its own; that is checked only
    when the dependency graph is sound (``graph_ok``: known keys, no cycle).
    """
    job_params = {p.name for p in plan.parameters}
    task_keys = {t.task_key for t in plan.tasks}
    referenced = {match.group(1).split(".")[1] for task in plan.tasks for value in task.parameters.values()
                  if isinstance(value, str) for match in REFERENCE.finditer(value)
                  if match.group(1).startswith("tasks.") and match.group(1).count(".") >= 2}
    upstream = _upstream_sets(plan, referenced & task_keys) if graph_ok else {}
    for i, task in enumerate(plan.tasks):
        for name, value in task.parameters.items():
            for problem in reference_problems(value, job_params, task_keys, upstream.get(task.task_key)):
                report(("tasks", i, "parameters", name), problem)


def reference_problems(value: Any, job_params: Container[str], tasks: Container[str],
                       upstream: Container[str] | None) -> list[str]:
    """What is wrong with the ``{{...}}`` references in a parameter value (Databricks' rules).

    A malformed reference (a missing brace) is a literal, as on Databricks; an unknown name in a
    known namespace (``job``, ``tasks``, ``workspace``) is an error; other names are left as text.
    """
    if not isinstance(value, str):
        return []
    problems = []
    for match in REFERENCE.finditer(value):
        ref = match.group(1)
        problem = _reference_problem(ref.split("."), job_params, tasks, upstream)
        if problem:
            problems.append(f"{{{{{ref}}}}}: {problem}")
    return problems


def _reference_problem(parts: list[str], job_params: Container[str], tasks: Container[str],
                       upstream: Container[str] | None) -> str:
    head = parts[0]
    if head == "job":
        if len(parts) == 2 and parts[1] in JOB_FIELDS:
            return ""
        if len(parts) == 3 and parts[1] == "start_time" and parts[2] in START_TIME_FIELDS:
            return ""
        if len(parts) == 3 and parts[1] == "parameters":
            return "" if parts[2] in job_params else f"no job parameter named {parts[2]!r}"
        return "unknown job reference"
    if head == "tasks":
        well_formed = (len(parts) == 4 and parts[2] == "values") or (len(parts) == 3 and parts[2] == "exit_value")
        if not well_formed:
            return "expected {{tasks.<key>.values.<name>}} or {{tasks.<key>.exit_value}}"
        if parts[1] not in tasks:
            return f"no task named {parts[1]!r}"
        if upstream is not None and parts[1] not in upstream:
            return f"task {parts[1]!r} is not upstream of this task (add it to depends_on)"
        return ""
    if head == "workspace" and parts[1:] not in (["id"], ["url"]):
        return "unknown workspace reference"
    return ""


class _Upstream:
    """Whether a task is upstream of one task, answered from bitsets (see :func:`_upstream_sets`)."""

    def __init__(self, bits: dict[str, int], reach: int) -> None:
        self._bits, self._reach = bits, reach

    def __contains__(self, key: object) -> bool:
        return bool(self._bits.get(key, 0) & self._reach) if isinstance(key, str) else False


def _upstream_sets(plan: Plan, wanted: set[str]) -> dict[str, _Upstream]:
    """For each task, which of the ``wanted`` tasks (those a ``{{tasks.<key>...}}`` reference
    names) are upstream of it.

    Ancestor sets are Python ints used as bitsets over ``wanted`` only, built in one pass in
    dependency order: each task ORs its dependencies' sets. That is one pass over tasks and
    edges, each step a machine-word operation per 64 referenced tasks; asking for the full
    upstream set of every task instead took the time of a chain's length cubed.
    """
    bits = {key: 1 << i for i, key in enumerate(sorted(wanted))}
    reach: dict[str, int] = {}
    for key in plan.order():
        acc = 0
        for dep in plan.task(key).depends_on:
            acc |= reach[dep] | bits.get(dep, 0)
        reach[key] = acc
    return {key: _Upstream(bits, acc) for key, acc in reach.items()}


# -- evaluating ----------------------------------------------------------------------------------
def resolve(value: Any, run: PlanRun) -> Any:
    """Replace ``{{job.*}}`` and ``{{tasks.*}}`` references by their values (strings).

    The references were checked when the plan loaded; raises InputError for a task value that
    an upstream task did not set in this run.
    """
    if not isinstance(value, str):
        return value
    start = dt.datetime.fromtimestamp(run.start_ms / 1000, dt.timezone.utc)

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if parts[0] == "job":
            if parts[1:2] == ["parameters"]:
                return run.job_parameters[parts[2]]
            if parts[1] == "start_time":
                return _START_TIME[parts[2]](start)
            job = {"id": "", "name": run.plan.name, "run_id": run.run_id, "repair_count": "0"}
            return job[parts[1]]
        if parts[0] == "tasks":
            attempt = run.tasks[parts[1]].last
            result = attempt.result if attempt else None
            if result is None:
                raise InputError(f"{match.group(0)}: task {parts[1]!r} has no result in this run")
            if parts[2] == "exit_value":
                return result.exit_value or ""
            if parts[3] not in result.task_values:
                raise InputError(f"{match.group(0)}: task {parts[1]!r} set no task value {parts[3]!r}")
            found = result.task_values[parts[3]]
            return found if isinstance(found, str) else json.dumps(found)
        return match.group(0)

    return REFERENCE.sub(one, value)
