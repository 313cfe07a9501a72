"""``nbflow run plan.yaml``: validate, schedule, report."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import InputError

if TYPE_CHECKING:
    from .runs import PlanRun, TaskRun


@dataclass(frozen=True)
class PlanRunOptions:
    """The options of ``nbflow run`` that a plan run uses (click passes them by these names)."""

    params: Sequence[str] = ()
    parameters_file: Path | None = None
    output_dir: Path | None = None
    engine: str = "auto"
    fresh_cluster: bool = False
    mode: str = "sequential"
    max_workers: int | None = None
    only: Sequence[str] = ()
    from_: str | None = None
    fail_fast: bool = False
    repair: Path | None = None
    as_json: bool = False

    @classmethod
    def from_click(cls, values: dict[str, Any]) -> PlanRunOptions:
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def run_plan(path: Path, options: PlanRunOptions) -> None:
    from . import params as params_mod
    from .lifecycle import interrupted_exit_code
    from .plan import load_plan
    from .project import processed_dir, project_dir
    from .report import event_line, live_table, summary, write_run_json
    from .report_html import write_report
    from .runner import new_run_id
    from .runs import SUCCEEDED
    from .scheduler import Scheduler

    params, parameters_file, output_dir = options.params, options.parameters_file, options.output_dir
    mode, only, from_, as_json = options.mode, options.only, options.from_, options.as_json
    plan, notebooks = load_plan(path)
    declared = {p.name for p in plan.parameters}
    prior: dict[str, TaskRun] = {}
    job_parameters: dict[str, str] = {}
    if options.repair is not None:
        from .report import read_prior_run

        prior, job_parameters = read_prior_run(options.repair, plan)
    for name, param in params_mod.from_command_line(parameters_file, params).items():
        if name not in declared:
            raise InputError(f"-p {name}: plan {plan.name!r} has no job parameter {name!r} "
                             f"(it has: {', '.join(sorted(declared)) or 'none'})")
        job_parameters[name] = param.widget_value
    keys = [t.task_key for t in plan.tasks]
    for key in [*only, *([from_] if from_ else [])]:
        if key not in keys:
            raise InputError(f"no task {key!r} in plan {plan.name!r} (tasks: {', '.join(keys)})")
    selected: set[str] | None = set(only) if only else None
    if from_:
        after = {from_} | plan.downstream(from_)
        selected = after if selected is None else selected | after
    run_id = new_run_id()
    project = project_dir()
    folder = (output_dir or processed_dir(project) / run_id).resolve()
    if options.fresh_cluster:
        from .cluster import server as cluster_server

        cluster_server.stop(project)

    terminal = not as_json and sys.stderr.isatty()  # a terminal: one live table instead of event lines

    def on_event(event: str, task_run: object) -> None:
        if not terminal:
            click.echo(event_line(event, task_run), err=as_json)  # type: ignore[arg-type]

    scheduler = Scheduler(plan, notebooks, folder, run_id, mode=mode, max_workers=options.max_workers,
                          job_parameters=job_parameters, only=selected, fail_fast=options.fail_fast,
                          context={"engine": options.engine}, on_event=on_event, prior=prior)
    try:
        if terminal:
            from rich.console import Console
            from rich.live import Live

            with Live(get_renderable=lambda: live_table(scheduler.run), console=Console(stderr=True),
                      refresh_per_second=4):
                run = scheduler.execute()
        else:
            run = scheduler.execute()
    except KeyboardInterrupt:
        run = scheduler.run
        write_run_json(run)
        write_report([run], folder, f"{plan.name}: run {run.run_id}")
        if as_json:
            click.echo(json.dumps(summary(run), indent=2))
        click.echo("nbflow: interrupted: running tasks were cancelled and their notebooks saved", err=True)
        sys.exit(interrupted_exit_code())
    write_run_json(run)
    write_report([run], folder, f"{plan.name}: run {run.run_id}")
    if as_json:
        click.echo(json.dumps(summary(run), indent=2))
    else:
        seconds = (run.end_ms - run.start_ms) / 1000
        click.echo(f"{run.result_state} plan {plan.name!r} ({mode}, {seconds:.1f} s): {folder}")
    if run.result_state not in SUCCEEDED and run.result_state != "SUCCESS_WITH_FAILURES":
        if run.resume_from:
            again = " ".join(shlex.quote(a) for a in _repeated_options(options))
            click.echo(f"nbflow: to re-run what did not succeed: nbflow run {shlex.quote(str(path))} "
                       f"--repair {shlex.quote(str(folder))}{' ' + again if again else ''}", err=True)
        sys.exit(interrupted_exit_code() if run.result_state == "CANCELED" else 1)


def _repeated_options(options: PlanRunOptions) -> list[str]:
    """The options of a run that its repair command repeats (job parameters come from run.json)."""
    found: list[str] = []
    if options.mode != "sequential":
        found += ["--mode", options.mode]
    if options.max_workers:
        found += ["--max-workers", str(options.max_workers)]
    if options.engine != "auto":
        found += ["--engine", options.engine]
    return found


def compare_plan(path: Path, modes: Sequence[str], repeat: int, max_workers: int | None, as_json: bool) -> None:
    """Run a plan in each mode (resetting its tables in between) and print the comparison."""
    from .project import processed_dir, project_dir
    from .runner import new_run_id

    compare_id = new_run_id()
    folder = processed_dir(project_dir()) / compare_id
    name, runs, rows = local_comparison(path, modes, repeat, max_workers, folder, compare_id)
    emit_comparison(name, folder, runs, rows, f"{name}: sequential against parallel", as_json)


def local_comparison(path: Path, modes: Sequence[str], repeat: int, max_workers: int | None, folder: Path,
                     compare_id: str) -> tuple[str, list[PlanRun], list[dict[str, Any]]]:
    """The plan run locally in each mode, ``repeat`` times, its tables reset between runs:
    (plan name, runs, figures)."""
    from .compare import figures, reset, snapshot
    from .plan import load_plan
    from .project import project_dir, warehouse_dir
    from .scheduler import Scheduler

    plan, notebooks = load_plan(path)
    project = project_dir()
    before = snapshot(project)
    runs: list[PlanRun] = []
    rows: list[dict[str, Any]] = []
    sequential_wall: float | None = None
    for mode in modes:
        for n in range(repeat):
            if runs:
                for line in reset(project, before, warehouse_dir(project)):
                    click.echo(f"reset: {line}", err=True)
            scheduler = Scheduler(plan, notebooks, folder / f"{mode}-{n + 1}", f"{compare_id}-{mode}-{n + 1}",
                                  mode=mode, max_workers=max_workers)
            run = scheduler.execute()
            if mode == "sequential" and sequential_wall is None:
                sequential_wall = (run.end_ms - run.start_ms) / 1000
            runs.append(run)
            rows.append(figures(run, sequential_wall, scheduler.max_workers))
            click.echo(f"{mode} #{n + 1}: {run.result_state} in {rows[-1]['wall_s']} s", err=True)
    return plan.name, runs, rows


def emit_comparison(plan_name: str, folder: Path, runs: list[PlanRun], rows: list[dict[str, Any]], title: str,
                    as_json: bool) -> None:
    """Write a comparison's report.html and compare.json, and print its table (or JSON)."""
    from .report_html import write_report

    folder.mkdir(parents=True, exist_ok=True)
    report = write_report(runs, folder, title, rows)
    (folder / "compare.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if as_json:
        click.echo(json.dumps({"plan": plan_name, "output_dir": str(folder), "runs": rows}, indent=2))
        return
    click.echo(f"{'mode':<18}{'wall s':>9}{'task s':>9}{'speed-up':>10}{'efficiency':>12}  status")
    for row in rows:
        click.echo(f"{row['mode']:<18}{row['wall_s']:>9}{row['task_s']:>9}{row['speedup']:>10}"
                   f"{row['efficiency']:>12}  {row['status']}")
    click.echo(f"report: {report}")
