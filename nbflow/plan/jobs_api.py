"""Translation from the Jobs API: a job definition in the Jobs API's own JSON shape as a plan.

A plan file may be a Jobs API job (``jobs/get`` output, or its ``settings``): see
:func:`from_jobs_api`. ``nbflow serve`` turns the jobs it is sent into plans with
:func:`plan_from_job`. (The way back, a plan as the settings of a workspace job, is deployment
and lives with it: :func:`nbflow.remote.adapter.job_settings`.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InputError, PlanError
from ..notebooks import resolve_notebook
from .checks import check, dotted, message, original
from .model import Plan, Task

# Jobs API fields about compute, notifications and the like: accepted in a Jobs API job definition
# (they matter on the remote side), not used by a local run.
JOBS_API_EXTRAS = {
    "job_id", "created_time", "creator_user_name", "run_as_user_name", "run_as", "settings", "format",
    "job_clusters", "email_notifications", "webhook_notifications", "notification_settings", "tags",
    "queue", "git_source", "environments", "health", "access_control_list", "budget_policy_id",
    "edit_mode", "deployment", "trigger", "continuous", "performance_target",
}
TASK_API_EXTRAS = {
    "existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key", "libraries",
    "email_notifications", "webhook_notifications", "notification_settings", "health", "compute",
}


def from_jobs_api(
    data: dict[str, Any], base: Path | None
) -> tuple[dict[str, Any], dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Turn a Jobs API job definition into a plan; a plan comes back unchanged.

    Recognised by ``notebook_task`` in its tasks (also inside ``settings``, as ``jobs/get``
    returns). ``notebook_task.notebook_path`` becomes ``notebook`` by this rule: the path as
    given, relative to the plan's folder; else with its leading folders dropped one by one
    (``/Workspace/Users/me/project/etl/load`` finds ``etl/load`` or ``load`` next to the plan).
    ``base_parameters`` becomes ``parameters``; compute and notification fields are ignored.
    With no ``base``, notebook paths are kept as they are (a workspace resolves them).
    Returns the plan data and, for error messages, the original field paths of renamed fields.
    """
    prefix: tuple[Any, ...] = ()
    if isinstance(data.get("settings"), dict) and "tasks" not in data:
        data, prefix = data["settings"], ("settings",)
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not any(isinstance(t, dict) and "notebook_task" in t for t in tasks):
        return data, {}
    renamed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    plan = {k: v for k, v in data.items() if k not in JOBS_API_EXTRAS}
    if isinstance(plan.get("parameters"), list):
        plan["parameters"] = [{"name": p.get("name"), "default": p.get("default", "")} if isinstance(p, dict) else p
                              for p in plan["parameters"]]
    plan["tasks"] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            plan["tasks"].append(task)
            continue
        converted = {k: v for k, v in task.items() if k not in TASK_API_EXTRAS and k != "notebook_task"}
        nb_task = task.get("notebook_task")
        if isinstance(nb_task, dict):
            path = str(nb_task.get("notebook_path", ""))
            converted["notebook"] = path if base is None else _local_notebook(path, base)
            renamed[("tasks", i, "notebook")] = ("tasks", i, "notebook_task", "notebook_path")
            if "base_parameters" in nb_task:
                converted["parameters"] = nb_task["base_parameters"]
                renamed[("tasks", i, "parameters")] = ("tasks", i, "notebook_task", "base_parameters")
        plan["tasks"].append(converted)
    return plan, {"prefix": prefix, **renamed}  # type: ignore[dict-item]


def _local_notebook(workspace_path: str, base: Path) -> str:
    parts = [p for p in workspace_path.split("/") if p]
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        try:
            resolve_notebook(candidate, base)
            return candidate
        except InputError:
            continue
    return workspace_path  # reported as missing, under its own name


def plan_from_job(settings: dict[str, Any], locate: Callable[[str], Path], where: str) -> tuple[Plan, dict[str, Path]]:
    """A Jobs API job (its ``settings``, or a ``runs/submit`` body) as a plan, with each task's
    notebook file found by ``locate`` (a workspace path to a local file; raises InputError).

    Raises PlanError listing every problem by its field path, prefixed by ``where``.
    """
    data, renamed = from_jobs_api(settings, None)
    renamed.pop("prefix", ())  # type: ignore[call-overload]
    # A workspace accepts fields newer than nbflow knows (the SDK sends them): keep only what runs.
    data = {k: v for k, v in data.items() if k in Plan.model_fields}
    data["tasks"] = [{k: v for k, v in t.items() if k in Task.model_fields} if isinstance(t, dict) else t
                     for t in data.get("tasks") or []]
    problems: list[str] = []

    def report(loc: tuple[Any, ...], text: str) -> None:
        problems.append(f"{where}: {dotted(original(renamed, loc)) or '(job)'}: {text}")

    for i, task in enumerate(settings.get("tasks") or []):
        if isinstance(task, dict) and "notebook_task" not in task:
            kinds = sorted(k for k in task if k.endswith("_task")) or ["none"]
            report(("tasks", i), f"only notebook_task runs here (this task has: {', '.join(kinds)})")
    if problems:
        raise PlanError(problems)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            report(tuple(error["loc"]), message(error))
        raise PlanError(problems) from None
    notebooks = check(plan, Path("."), report, locate)
    if problems:
        raise PlanError(problems)
    return plan, notebooks
