"""The ``nbflow`` command line: thin commands that map NbflowError to exit codes.

Exit codes: 0 success, 1 a notebook failed or timed out, 2 bad usage or bad input,
3 the environment could not run the work (no kernel), 130 interrupted (Ctrl-C), 143 stopped by
SIGTERM (``nbflow run`` treats it as Ctrl-C: the run is cancelled and its results written).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .cli_errors import handle_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nbflow")
def cli() -> None:
    """Run Databricks notebooks locally, the way Databricks runs them."""


@cli.command()
@click.argument("notebook", type=click.Path(path_type=Path), metavar="NOTEBOOK|PLAN")
@click.option("-p", "--parameter", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter (widget value and, with a parameters cell, a typed variable). Repeatable.")
@click.option("-f", "--parameters-file", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML or JSON mapping of parameters; -p values win over it.")
@click.option("--output-dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Where the executed notebook and run.json go [default: processed/<run-id>].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop the notebook after S seconds (status TIMEDOUT).")
@click.option("--log-output", is_flag=True, help="Stream the notebook's output to stderr as it runs.")
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
@handle_errors
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
    from . import params as params_mod
    from .lifecycle import interrupted_exit_code

    if notebook.suffix.lower() in (".yaml", ".yml", ".json"):
        from .plan_cli import PlanRunOptions, run_plan

        run_plan(notebook, PlanRunOptions.from_click(click.get_current_context().params))
        return
    from .project import processed_dir, project_dir
    from .runner import new_run_id, run_notebook, summary, write_run_json

    parameters = params_mod.from_command_line(parameters_file, params)
    run_id = new_run_id()
    folder = (output_dir or processed_dir(project_dir()) / run_id).resolve()
    if log_output:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("papermill").setLevel(logging.WARNING)  # its input/output lines are noise here
    if fresh_cluster:
        from .cluster import server as cluster_server

        cluster_server.stop(project_dir())
    result = run_notebook(notebook, parameters, output_dir=folder, timeout=timeout, run_id=run_id,
                          log_output=log_output, engine_name=engine)
    write_run_json(result, folder)
    for warning in result.warnings:
        click.echo(f"nbflow: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(summary(result, folder), indent=2))
    else:
        _print_run(result)
    if not result.ok:
        sys.exit(interrupted_exit_code() if result.status == "CANCELED" else 1)


def _print_run(result: Any) -> None:
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


@cli.command()
@click.argument("executed", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def inspect(executed: Path, as_json: bool) -> None:
    """Show what an nbflow run recorded in an EXECUTED notebook."""
    from .results import read_result

    result = read_result(executed)
    data = {
        "notebook": result.notebook,
        "output": result.output,
        "status": result.status,
        "exit_value": result.exit_value,
        "exit_truncated": result.exit_truncated,
        "parameters": result.parameters,
        "variables": result.variables,
        "task_values": result.task_values,
        "error": None if result.error is None else result.error.summary(),
        "cells": result.cells,
        "children": result.children,
        "duration_s": result.duration_s,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from .inspect_view import render

    render(data)


@cli.command()
@click.argument("plan", type=click.Path(path_type=Path))
@handle_errors
def validate(plan: Path) -> None:
    """Check a PLAN (YAML or JSON) without running it: every problem, with its file and line."""
    from .plan import load_plan

    loaded, _notebooks = load_plan(plan)
    click.echo(f"{plan}: OK: plan {loaded.name!r}, {len(loaded.tasks)} tasks, order {' -> '.join(loaded.order())}")


@cli.command()
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--modes", default="sequential,parallel", show_default=True, help="Modes to run, in order.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per mode.")
@click.option("--max-workers", type=click.IntRange(min=1), help="Tasks at once in parallel mode.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def compare(plan: Path, modes: str, repeat: int, max_workers: int | None, as_json: bool) -> None:
    """Run PLAN sequentially and in parallel, and compare their times (tables reset in between)."""
    from .plan_cli import compare_plan

    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in wanted if m not in ("sequential", "parallel")]
    if bad or not wanted:
        raise click.BadParameter(f"unknown mode {', '.join(bad) or '(none)'}: use sequential and/or parallel")
    compare_plan(plan, wanted, repeat, max_workers, as_json)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a plan file."""
    from .plan import Plan

    click.echo(json.dumps(Plan.model_json_schema(), indent=2))


def main() -> None:
    cli(prog_name="nbflow")


# Last: cluster_cli uses handle_errors from this module.
from .cluster_cli import cluster  # noqa: E402

cli.add_command(cluster)
from .table_cli import table  # noqa: E402

cli.add_command(table)
from .remote.serve_cli import serve  # noqa: E402

cli.add_command(serve)
from .remote.remote_cli import remote  # noqa: E402

cli.add_command(remote)
