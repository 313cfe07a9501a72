"""What a plan is checked for once its fields are valid, and how each problem is worded.

Both ways a plan comes in (a plan file, :mod:`nbflow.plan.loading`; a Jobs API job,
:mod:`nbflow.plan.jobs_api`) check it here: task keys, dependencies, cycles, notebooks and
references, each problem reported at its field path (``tasks[1].depends_on[0]``).
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..notebook_facts import facts
from ..notebooks import resolve_notebook
from .model import RUN_IF, Plan
from .references import check_references

Report = Callable[[tuple[Any, ...], str], None]  # (field path, message)


def check(plan: Plan, base: Path, report: Report, locate: Callable[[str], Path] | None = None) -> dict[str, Path]:
    """The checks that need the whole plan: keys, dependencies, cycles, notebooks, references."""
    keys: dict[str, int] = {}
    for i, task in enumerate(plan.tasks):
        if task.task_key in keys:
            first = keys[task.task_key]
            report(("tasks", i, "task_key"), f"duplicate task_key {task.task_key!r} (also tasks[{first}])")
        keys.setdefault(task.task_key, i)
    graph_ok = True
    for i, task in enumerate(plan.tasks):
        for j, dep in enumerate(task.depends_on):
            if dep not in keys:
                report(("tasks", i, "depends_on", j), f"unknown task {dep!r}")
                graph_ok = False
            elif dep == task.task_key:
                report(("tasks", i, "depends_on", j), "a task cannot depend on itself")
                graph_ok = False
    graph_ok = graph_ok and len(keys) == len(plan.tasks)
    if graph_ok:
        cycle = _cycle(plan)
        if cycle:
            report(("tasks", keys[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
            graph_ok = False
    notebooks: dict[str, Path] = {}
    unreadable: dict[Path, str] = {}  # each file read once, however many tasks name it
    located: dict[str, Path | InputError] = {}  # many tasks often run the same notebook
    for i, task in enumerate(plan.tasks):
        if task.notebook not in located:
            try:
                located[task.notebook] = locate(task.notebook) if locate else resolve_notebook(task.notebook, base)
            except InputError as exc:
                located[task.notebook] = exc
        found = located[task.notebook]
        if isinstance(found, InputError):
            report(("tasks", i, "notebook"), str(found))
            continue
        notebooks[task.task_key] = found
        if locate is None:
            # A path may lead anywhere (../notebooks/x.py next to a plans/ folder is usual), but only
            # to a notebook nbflow can read: /etc/passwd is not one, nor a broken .ipynb.
            if found not in unreadable:
                unreadable[found] = facts(found).problem
            if unreadable[found]:
                report(("tasks", i, "notebook"), unreadable[found])
    check_references(plan, graph_ok, report)
    return notebooks


def _cycle(plan: Plan) -> list[str]:
    """A dependency cycle (``a, b, a``: a depends on b, which depends on a), or [] if none."""
    try:
        plan.order()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))
    return []


def original(renamed: dict[tuple[Any, ...], tuple[Any, ...]], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A field path as the file spelled it (a Jobs API definition's fields are renamed on load)."""
    for end in range(1, len(loc) + 1):  # renamed paths do not nest: the shortest match is the one
        if loc[:end] in renamed:
            return (*renamed[loc[:end]], *loc[end:])
    return loc


def dotted(loc: tuple[Any, ...]) -> str:
    """A field path as messages write it: ``tasks[1].depends_on[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def message(error: Any) -> str:
    """A pydantic error as one short phrase about its field."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error" and error["loc"][-1] == "run_if":
        return f"{error['input']!r} is not a run_if value ({', '.join(RUN_IF)})"
    return str(error["msg"]).removeprefix("Value error, ")
