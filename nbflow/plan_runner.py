"""Running a plan from Python: :func:`run_plan`, what ``nbflow run plan.yaml`` does between
reading its options and printing its result.

It selects the tasks (``only``, ``from_task``), takes job parameters (checked against those the
plan declares), keeps what succeeded in an earlier run it repairs, runs the DAG on the
:class:`~nbflow.scheduler.Scheduler`, and writes ``run.json`` and ``report.html`` into the run's
folder, whatever the outcome (a cancelled run included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import params as params_mod
from .errors import InputError
from .params import Param
from .plan import Plan, check_plan, load_plan
from .project import processed_dir, project_dir
from .report import read_prior_run, write_run_json
from .report_html import write_report
from .runs import MODES, PlanRun, TaskRun
from .scheduler import Scheduler
from .task_spec import new_run_id


def run_plan(
    plan: str | Path | Plan,
    *,
    mode: str = "sequential",
    max_workers: int | None = None,
    only: Iterable[str] = (),
    from_task: str | None = None,
    job_parameters: Mapping[str, Any] | None = None,
    repair: str | Path | None = None,
    fail_fast: bool = False,
    output_dir: str | Path | None = None,
    run_id: str | None = None,
    cluster_engine: str = "auto",
    base_dir: str | Path | None = None,
    on_event: Callable[[str, TaskRun], None] | None = None,
    on_start: Callable[[PlanRun], None] | None = None,
) -> PlanRun:
    """Run a plan's tasks as a Databricks job runs them, and return the run.

    ``plan`` is a plan file (YAML or JSON, a Jobs API job definition too) or a :class:`Plan`
    built in code, whose notebook paths resolve against ``base_dir`` (default: the current
    folder). ``mode`` is ``sequential`` (one task at a time, in the plan's order) or
    ``parallel`` (every ready task at once, up to ``max_workers``). ``only`` runs just those
    tasks; ``from_task`` runs that task and everything downstream of it (both together: the
    union). ``job_parameters`` (names the plan declares; a value may be a
    :class:`nbflow.params.Param`) reach every task and win over task parameters. ``repair``, the
    folder of an earlier run of this plan, keeps that run's successful tasks and job parameters
    and runs the rest (a Databricks repair run); ``job_parameters`` override its parameters.
    ``fail_fast`` starts no new task after a failure. ``cluster_engine`` is the cluster engine if
    a notebook needs Spark and no cluster runs (``auto``, ``sail``, ``spark`` or
    ``sc://host:port``).

    ``on_start(run)`` is called once the run is set up, before any task starts; the object is
    updated as tasks run (a live view can read it). ``on_event(event, task_run)`` is called on
    ``started``, ``retry``, ``skipped`` and ``finished``.

    The run's notebooks, ``run.json`` and ``report.html`` go to ``output_dir`` (default
    ``processed/<run_id>`` in the project). A task that fails is a state of the run, not an
    exception; bad input (the plan, a selection, a parameter, the repaired run) raises an
    :class:`~nbflow.errors.InputError` before anything runs. Ctrl-C (or SIGTERM where the CLI
    treats it so) cancels the run: running notebooks are interrupted and saved, and the run
    comes back with ``result_state`` ``CANCELED``, as :func:`nbflow.run_notebook` returns a
    cancelled result.
    """
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: use sequential or parallel")
    if isinstance(plan, Plan):
        loaded, notebooks = plan, check_plan(plan, Path(base_dir) if base_dir is not None else Path.cwd())
    else:
        loaded, notebooks = load_plan(plan)
    prior: dict[str, TaskRun] = {}
    parameters: dict[str, str] = {}
    if repair is not None:
        prior, parameters = read_prior_run(Path(repair), loaded)
    parameters.update(_job_parameters(loaded, params_mod.from_mapping(job_parameters, "api")))
    selected = _selection(loaded, list(only), from_task)
    run_id = run_id or new_run_id()
    folder = Path(output_dir or processed_dir(project_dir()) / run_id).resolve()
    scheduler = Scheduler(loaded, notebooks, folder, run_id, mode=mode, max_workers=max_workers,
                          job_parameters=parameters, only=selected, fail_fast=fail_fast,
                          context={"engine": cluster_engine}, on_event=on_event, prior=prior)
    try:
        if on_start is not None:
            on_start(scheduler.run)
        run = scheduler.execute()
    except KeyboardInterrupt:
        # The scheduler stopped every task and marked the run CANCELED before re-raising.
        run = scheduler.run
    write_run_json(run)
    write_report([run], folder, f"{loaded.name}: run {run.run_id}")
    return run


def _job_parameters(plan: Plan, given: Mapping[str, Param]) -> dict[str, str]:
    """The widget strings of the job parameters given, each a name the plan declares."""
    declared = {p.name for p in plan.parameters}
    for name, param in given.items():
        if name not in declared:
            raise InputError(f"{_origin(name, param)}: plan {plan.name!r} has no job parameter {name!r} "
                             f"(it has: {', '.join(sorted(declared)) or 'none'})")
    return {name: param.widget_value for name, param in given.items()}


def _origin(name: str, param: Param) -> str:
    """Where a job parameter was given, as its error names it."""
    if param.source == "cli":
        return f"-p {name}"
    if param.source.startswith("file:"):
        return f"{param.source.removeprefix('file:')}: parameter {name}"
    return f"job parameter {name!r}"


def _selection(plan: Plan, only: list[str], from_task: str | None) -> set[str] | None:
    """The tasks to run (None: all): ``only``, plus ``from_task`` and what follows it."""
    keys = [t.task_key for t in plan.tasks]
    for key in [*only, *([from_task] if from_task else [])]:
        if key not in keys:
            raise InputError(f"no task {key!r} in plan {plan.name!r} (tasks: {', '.join(keys)})")
    selected: set[str] | None = set(only) if only else None
    if from_task:
        after = {from_task} | plan.downstream(from_task)
        selected = after if selected is None else selected | after
    return selected
