"""``nbflow run`` (a notebook, or a plan), ``nbflow validate`` and ``nbflow schema``."""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.live import Live

from .. import cluster
from .. import params as params_mod
from ..errors import InputError
from ..plan import Plan, load_plan
from ..plan_runner import run_plan
from ..project import project_dir
from ..report import event_line, live_table, summary
from ..results import NotebookResult
from ..runner import DEFAULT_OUTPUT_ROOT, new_run_id, run_notebook, write_run_json
from ..runner import summary as notebook_summary
from ..scheduler import PlanRun, TaskRun
from .commands import short_help
from .exits import exit_code, finish

PLAN_SUFFIXES = (".yaml", ".yml", ".json")
# Options that mean something for one kind of run only: given to the other, they are refused
# rather than ignored (by their click parameter names).
PLAN_ONLY = ("mode", "max_workers", "only", "from_", "fail_fast", "repair")
NOTEBOOK_ONLY = ("timeout", "log_output")


@click.command(short_help=short_help("run"))
@click.argument("notebook", type=click.Path(path_type=Path), metavar="NOTEBOOK|PLAN")
@click.option("-p", "--parameter", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter (widget value and, with a parameters cell, a typed variable); for a plan, a "
                   "job parameter it declares. Repeatable.")
@click.option("-f", "--parameters-file", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML or JSON mapping of parameters; -p values win over it.")
@click.option("--output-dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Where the executed notebooks and run.json go [default: processed/<run-id>].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Notebooks: stop the notebook after S seconds (status TIMEDOUT).")
@click.option("--log-output", is_flag=True, help="Notebooks: stream the notebook's output to stderr as it runs.")
@click.option("--engine", default="auto", show_default=True, metavar="auto|sail|spark|sc://HOST:PORT",
              help="Cluster engine if the notebook needs Spark; a running cluster of another engine "
                   "must be stopped first (--fresh-cluster).")
@click.option("--fresh-cluster", is_flag=True, help="Restart the project's cluster before running.")
@click.option("--mode", type=click.Choice(["sequential", "parallel"]), default="sequential", show_default=True,
              help="Plans: one task at a time, or every ready task at once (up to --max-workers).")
@click.option("--max-workers", type=click.IntRange(min=1), help="Plans: tasks running at once in parallel mode.")
@click.option("--only", multiple=True, metavar="KEY", help="Plans: run only these tasks. Repeatable.")
@click.option("--from", "from_", metavar="KEY", help="Plans: run this task and every task after it.")
@click.option("--fail-fast", is_flag=True, help="Plans: start no new task after the first failure.")
@click.option("--repair", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Plans: re-run what did not succeed in that earlier run (processed/<run-id>), keeping "
                   "its successful tasks' results, task values and job parameters, as a Databricks repair run.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary on stdout.")
def run(
    notebook: Path,
    params: Sequence[str],
    parameters_file: Path | None,
    output_dir: Path | None,
    timeout: float | None,
    log_output: bool,
    engine: str,
    fresh_cluster: bool,
    mode: str,
    max_workers: int | None,
    only: Sequence[str],
    from_: str | None,
    fail_fast: bool,
    repair: Path | None,
    as_json: bool,
) -> None:
    """Run NOTEBOOK (.ipynb or Databricks source .py) in a fresh kernel, or a PLAN (.yaml/.json)."""
    is_plan = notebook.suffix.lower() in PLAN_SUFFIXES
    _refuse_other_kinds_options(notebook, is_plan)
    parameters = params_mod.from_command_line(parameters_file, params)
    if is_plan:
        _run_plan(notebook, parameters, output_dir, engine, fresh_cluster, mode, max_workers, only, from_,
                  fail_fast, repair, as_json)
        return
    if fresh_cluster:
        cluster.stop(project_dir())
    _run_notebook(notebook, parameters, output_dir, timeout, log_output, engine, as_json)


def _refuse_other_kinds_options(path: Path, is_plan: bool) -> None:
    """An option of plan runs given for a notebook, or one of notebook runs for a plan, is a
    usage error: ignoring it would run something else than what was asked."""
    ctx = click.get_current_context()
    wrong = NOTEBOOK_ONLY if is_plan else PLAN_ONLY
    given = [param for param in ctx.command.params
             if param.name in wrong and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT]
    if not given:
        return
    names = ", ".join(max(param.opts, key=len) for param in given)
    what = "options" if len(given) > 1 else "an option"
    if is_plan:
        raise InputError(f"{names}: {what} of notebook runs only, and {path} is a plan (a task's timeout is its "
                         f"timeout_seconds; what it prints is kept in <task>.log)")
    raise InputError(f"{names}: {what} of plan runs only, and {path} is a notebook (plans are .yaml, .yml or "
                     f".json files)")


def _run_notebook(path: Path, parameters: dict[str, params_mod.Param], output_dir: Path | None,
                  timeout: float | None, log_output: bool, engine: str, as_json: bool) -> None:
    run_id = new_run_id()
    folder = (output_dir or project_dir() / DEFAULT_OUTPUT_ROOT / run_id).resolve()
    if log_output:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("papermill").setLevel(logging.WARNING)  # its input/output lines are noise here
    result = run_notebook(path, parameters, output_dir=folder, timeout=timeout, run_id=run_id,
                          log_output=log_output, engine_name=engine)
    write_run_json(result, folder)
    for warning in result.warnings:
        click.echo(f"nbflow: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(notebook_summary(result, folder), indent=2))
    else:
        _print_notebook_run(result)
    finish(result.status)


def _print_notebook_run(result: NotebookResult) -> None:
    duration = f"{result.duration_s:.1f} s" if result.duration_s is not None else "?"
    if result.ok:
        exit_text = "" if result.exit_value is None else f", exit value {_clip(result.exit_value)!r}"
        click.echo(f"{result.status} {result.notebook} ({duration}{exit_text})")
        click.echo(f"  executed notebook: {result.output}")
        return
    error = result.error
    where = ""
    if error is not None:
        cell = "" if error.cell_index is None else f" at cell {error.cell_index}"
        where = f"{cell}: {error.ename}: {_clip(error.evalue)}"
    click.echo(f"nbflow: {result.status} {result.notebook}{where} (executed notebook: {result.output})", err=True)


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_plan(path: Path, parameters: dict[str, params_mod.Param], output_dir: Path | None, engine: str,
              fresh_cluster: bool, mode: str, max_workers: int | None, only: Sequence[str], from_: str | None,
              fail_fast: bool, repair: Path | None, as_json: bool) -> None:
    terminal = not as_json and sys.stderr.isatty()  # a terminal: one live table instead of event lines

    def on_event(event: str, task_run: TaskRun) -> None:
        if not terminal:
            click.echo(event_line(event, task_run), err=as_json)

    with contextlib.ExitStack() as live:

        def on_start(plan_run: PlanRun) -> None:
            if fresh_cluster:  # once the plan and the options are known to be good
                cluster.stop(project_dir())
            if terminal:
                live.enter_context(Live(get_renderable=lambda: live_table(plan_run), console=Console(stderr=True),
                                        refresh_per_second=4))

        plan_run = run_plan(path, mode=mode, max_workers=max_workers, only=only, from_task=from_,
                            job_parameters=parameters, repair=repair, fail_fast=fail_fast, output_dir=output_dir,
                            cluster_engine=engine, on_event=on_event, on_start=on_start)
    if as_json:
        click.echo(json.dumps(summary(plan_run), indent=2))
    if plan_run.result_state == "CANCELED":
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


@click.command(short_help=short_help("validate"))
@click.argument("plan", type=click.Path(path_type=Path))
def validate(plan: Path) -> None:
    """Check a PLAN (YAML or JSON) without running it: every problem, with its file and line."""
    loaded, _notebooks = load_plan(plan)
    click.echo(f"{plan}: OK: plan {loaded.name!r}, {len(loaded.tasks)} tasks, order {' -> '.join(loaded.order())}")


@click.command(short_help=short_help("schema"))
def schema() -> None:
    """Print the JSON Schema of a plan file."""
    click.echo(json.dumps(Plan.model_json_schema(), indent=2))
