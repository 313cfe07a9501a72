"""``nbflow run``: a notebook here, a plan through :mod:`nbflow.cli.plan`."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from click.core import ParameterSource

from .. import params as params_mod
from ..errors import InputError
from ..leased_run import run_leased
from ..project import processed_dir, project_dir
from ..results import summary, write_run_json
from ..runs import MODES, NotebookResult
from ..task_spec import new_run_id
from .commands import short_help
from .exits import finish

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
@click.option("--mode", type=click.Choice(MODES), default="sequential", show_default=True,
              help="Plans: one task at a time, or every ready task at once (up to --max-workers).")
@click.option("--max-workers", type=click.IntRange(min=1), help="Plans: tasks running at once in parallel mode.")
@click.option("--only", multiple=True, metavar="KEY", help="Plans: run only these tasks. Repeatable.")
@click.option("--from", "from_", metavar="KEY", help="Plans: run this task and every task after it.")
@click.option("--fail-fast", is_flag=True, help="Plans: start no new task after the first failure.")
@click.option("--repair", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Plans: re-run what did not succeed in that earlier run (processed/<run-id>), keeping "
                   "its successful tasks' results, task values and job parameters, as a Databricks repair run.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary on stdout.")
@click.option("--junit-xml", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write the result as JUnit XML (a test case per notebook or task), for CI.")
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
    junit_xml: Path | None,
) -> None:
    """Run NOTEBOOK (.ipynb or Databricks source .py) in a fresh kernel, or a PLAN (.yaml/.json)."""
    is_plan = notebook.suffix.lower() in PLAN_SUFFIXES
    _refuse_other_kinds_options(notebook, is_plan)
    parameters = params_mod.from_command_line(parameters_file, params)
    if engine == "spark":
        # Here, not in the kernel that starts the cluster: the one line about fetching Delta's jars
        # reaches the user's terminal instead of a kernel log.
        from ..cluster import server as cluster_server  # lazy: only --engine spark needs the jars

        cluster_server.fetch_delta_jars(engine)
    if is_plan:
        # Plan models (pydantic), the scheduler and rich's live view: a notebook run skips them.
        from .plan import run_plan_file  # lazy: plans only; a notebook run would pay for them

        run_plan_file(notebook, parameters, output_dir=output_dir, engine=engine, fresh_cluster=fresh_cluster,
                      mode=mode, max_workers=max_workers, only=only, from_task=from_, fail_fast=fail_fast,
                      repair=repair, as_json=as_json, junit_xml=junit_xml)
        return
    if fresh_cluster:
        from ..cluster import server as cluster_server  # lazy: only --fresh-cluster; a run without Spark never loads it

        cluster_server.stop(project_dir())
    _run_notebook(notebook, parameters, output_dir, timeout, log_output, engine, as_json, junit_xml)


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
                  timeout: float | None, log_output: bool, engine: str, as_json: bool,
                  junit_xml: Path | None) -> None:
    run_id = new_run_id()
    folder = (output_dir or processed_dir(project_dir()) / run_id).resolve()
    if log_output:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("papermill").setLevel(logging.WARNING)  # its input/output lines are noise here
    result = run_leased(path, parameters, folder, timeout=timeout, log_output=log_output, engine=engine,
                        run_id=run_id)
    write_run_json(result, folder)
    if junit_xml is not None:
        from ..testing.junit import notebook_junit  # lazy: only asked for in CI

        notebook_junit(result, junit_xml)
    for warning in result.warnings:
        click.echo(f"nbflow: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(summary(result, folder), indent=2))
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
