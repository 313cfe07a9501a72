"""``nbflow run PLAN``: the plan branch of ``nbflow run``, over :func:`nbflow.run_plan`."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ..cluster import server as cluster_server
from ..params import Param
from ..plan_runner import run_plan
from ..project import project_dir
from ..report import event_line, live_table, summary
from ..runs import CANCELED, PlanRun, TaskRun
from .exits import exit_code, finish


def run_plan_file(path: Path, parameters: dict[str, Param], *, output_dir: Path | None, engine: str,
                  fresh_cluster: bool, mode: str, max_workers: int | None, only: Sequence[str],
                  from_task: str | None, fail_fast: bool, repair: Path | None, as_json: bool,
                  junit_xml: Path | None = None) -> None:
    """``nbflow run PLAN``: run it with :func:`nbflow.run_plan`, show its progress (a live table
    in a terminal, else one line per event), print its result, exit with its state's code."""
    terminal = not as_json and sys.stderr.isatty()  # a terminal: one live table instead of event lines

    def on_event(event: str, task_run: TaskRun) -> None:
        if not terminal:
            click.echo(event_line(event, task_run), err=as_json)

    with contextlib.ExitStack() as live:

        def on_start(plan_run: PlanRun) -> None:
            if fresh_cluster:  # once the plan and the options are known to be good
                cluster_server.stop(project_dir())
            if terminal:
                from rich.console import Console  # lazy: as report.live_table's table
                from rich.live import Live  # lazy: as above

                live.enter_context(Live(get_renderable=lambda: live_table(plan_run), console=Console(stderr=True),
                                        refresh_per_second=4))

        plan_run = run_plan(path, mode=mode, max_workers=max_workers, only=only, from_task=from_task,
                            job_parameters=parameters, repair=repair, fail_fast=fail_fast, output_dir=output_dir,
                            cluster_engine=engine, on_event=on_event, on_start=on_start)
    if junit_xml is not None:
        from ..testing.junit import plan_junit  # lazy: only asked for in CI

        plan_junit(plan_run, junit_xml)
    if as_json:
        click.echo(json.dumps(summary(plan_run), indent=2))
    if plan_run.result_state == CANCELED:
        click.echo("nbflow: interrupted: running tasks were cancelled and their notebooks saved", err=True)
        finish(plan_run.result_state)
    if not as_json:
        seconds = (plan_run.end_ms - plan_run.start_ms) / 1000
        click.echo(f"{plan_run.result_state} plan {plan_run.plan.name!r} ({mode}, {seconds:.1f} s): "
                   f"{plan_run.output_dir}")
    if exit_code(plan_run.result_state) and plan_run.resume_from:
        again = " ".join(shlex.quote(a) for a in _repeated_options(mode, max_workers, engine))
        click.echo(f"nbflow: to re-run what did not succeed: nbflow run {shlex.quote(str(path))} "
                   f"--repair {shlex.quote(str(plan_run.output_dir))}{' ' + again if again else ''}", err=True)
    finish(plan_run.result_state)


def _repeated_options(mode: str, max_workers: int | None, engine: str) -> list[str]:
    """The options of a run that its repair command repeats (job parameters come from run.json)."""
    found: list[str] = []
    if mode != "sequential":
        found += ["--mode", mode]
    if max_workers:
        found += ["--max-workers", str(max_workers)]
    if engine != "auto":
        found += ["--engine", engine]
    return found
