"""Loading a plan file: YAML or JSON (a plan, or a Jobs API job definition), validated before
anything runs.

Every problem is reported at once, each as ``FILE:LINE: field.path: message``; notebooks are
found relative to the plan's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..documents import read_document
from ..errors import PlanError
from .checks import check, dotted, message, original
from .jobs_api import from_jobs_api
from .model import Plan

_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}


def load_plan(path: str | Path) -> tuple[Plan, dict[str, Path]]:
    """Read and validate a plan; return it with each task's notebook file.

    Raises PlanError listing every problem, each naming the file, line and field path.
    """
    path = Path(path)
    document = read_document(path, "plan", lambda text: PlanError([text]))
    data = document.data
    if not isinstance(data, dict):
        raise PlanError([f"{path}:1: a plan is a mapping with 'name' and 'tasks'"])
    data, renamed = from_jobs_api(data, path.parent)
    if isinstance(data.get("parameters"), dict):
        # The short form {name: default}: errors name the key (and its line), not a list index.
        names = list(data["parameters"])
        data = {**data, "parameters": [{"name": k, "default": v} for k, v in data["parameters"].items()]}
        renamed.update({("parameters", i, "name"): ("parameters", k) for i, k in enumerate(names)})
        renamed.update({("parameters", i, "default"): ("parameters", k) for i, k in enumerate(names)})
    problems: list[str] = []

    prefix = renamed.pop("prefix", ())  # type: ignore[call-overload]

    def report(loc: tuple[Any, ...], text: str) -> None:
        # Renamed fields of a Jobs API definition, e.g. parameters[...] -> notebook_task.base_parameters
        spelled = original(renamed, loc)
        line = document.line((*prefix, *spelled))
        problems.append(f"{path}:{line}: {dotted(spelled) or '(plan)'}: {text}")

    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        seen: set[tuple[Any, ...]] = set()
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc and loc[-1] in _UNION_MEMBERS:  # one message for a value of none of the allowed types
                loc = loc[:-1]
                if loc in seen:
                    continue
                error = {**error, "type": "union", "msg": "must be a string, a number, a boolean or null"}
            seen.add(loc)
            report(loc, message(error))
        raise PlanError(problems) from None
    notebooks = check(plan, path.parent, report)
    if problems:
        raise PlanError(problems)
    return plan, notebooks


def check_plan(plan: Plan, base_dir: Path) -> dict[str, Path]:
    """The checks of :func:`load_plan` that need the whole plan, for a plan built in code (keys,
    dependencies, cycles, notebooks relative to ``base_dir``, references); each task's notebook
    file. Raises PlanError listing every problem by its field path."""
    problems: list[str] = []

    def report(loc: tuple[Any, ...], text: str) -> None:
        problems.append(f"plan {plan.name!r}: {dotted(loc) or '(plan)'}: {text}")

    notebooks = check(plan, base_dir, report)
    if problems:
        raise PlanError(problems)
    return notebooks
