"""``nbflow remote``: deploy a plan to a Databricks workspace, run it there, compare, destroy."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import params as params_mod
from ..remote.adapter import ClusterOptions
from ..remote.deploy import compare_jobs, deploy_plan, destroy_deployment, run_job
from ..report import summary
from ..runs import MODES
from .commands import short_help
from .compare import show
from .exits import finish

PROFILE = click.option("--profile", metavar="NAME",
                       help="A ~/.databrickscfg profile [default: DATABRICKS_HOST/TOKEN, else the DEFAULT profile].")


def _say(text: str) -> None:
    click.echo(f"nbflow remote: {text}", err=True)


@click.group(short_help=short_help("remote"))
def remote() -> None:
    """Send a plan to a Databricks workspace (or to nbflow serve) with databricks-sdk."""


@remote.command()
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@click.option("--workspace-dir", metavar="PATH", help="Where the notebooks go [default: /Shared/nbflow/<plan>].")
@click.option("--cluster", default="new", show_default=True, metavar="new|job|ID",
              help="new: create (or reuse) an all-purpose cluster named nbflow-<plan>; job: job clusters; "
                   "or the id of a cluster to use.")
@click.option("--spark-version", metavar="KEY", help="Cluster runtime [default: the plan's, else the latest LTS].")
@click.option("--node-type", metavar="ID", help="Cluster node type [default: the plan's, else the smallest offered].")
@click.option("--num-workers", type=click.IntRange(min=0), help="Workers [default: the plan's, else 1].")
@click.option("--autotermination-minutes", type=click.IntRange(min=0),
              help="Idle minutes before the cluster stops [default: the plan's, else 30].")
@click.option("--form", type=click.Choice(["dag", "orchestrator", "both"]), default="dag", show_default=True,
              help="dag: the plan's tasks as job tasks; orchestrator: one task running orchestrate_<mode>.")
@click.option("--schedule", is_flag=True, help="Set the plan's schedule (cron, time zone, pause) on the jobs.")
@PROFILE
def deploy(plan_file: Path, workspace_dir: str | None, cluster: str, spark_version: str | None,
           node_type: str | None, num_workers: int | None, autotermination_minutes: int | None, form: str,
           schedule: bool, profile: str | None) -> None:
    """Upload PLAN's notebooks, make sure its cluster runs, and create or update its jobs."""
    options = ClusterOptions(cluster, spark_version, node_type, num_workers, autotermination_minutes)
    deployment = deploy_plan(plan_file, workspace_dir=workspace_dir, cluster=options, form=form,
                               schedule=schedule, profile=profile, say=_say)
    click.echo(json.dumps({"workspace_dir": deployment.workspace_dir, "cluster_id": deployment.cluster_id,
                           "jobs": deployment.jobs}, indent=2))


@remote.command("run")
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@click.option("--mode", type=click.Choice(MODES), default="sequential", show_default=True)
@click.option("--form", type=click.Choice(["dag", "orchestrator"]), default="dag", show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the run until it ends.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="S", help="Stop waiting after S seconds.")
@click.option("-p", "--parameter", "params", multiple=True, metavar="NAME=VALUE", help="A job parameter.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary on stdout.")
@PROFILE
def run_remote(plan_file: Path, mode: str, form: str, wait: bool, timeout: float | None, params: tuple[str, ...],
               as_json: bool, profile: str | None) -> None:
    """Run PLAN's deployed job for MODE in the workspace; write run.json and report.html locally."""
    job_parameters = {k: p.widget_value for k, p in params_mod.from_command_line(None, params).items()}
    started = run_job(plan_file, mode=mode, form=form, job_parameters=job_parameters, wait=wait,
                         timeout=timeout, profile=profile, say=_say)
    plan_run = started.plan_run
    if plan_run is None:  # --no-wait
        click.echo(json.dumps({"run_id": started.run_id, "job_id": started.job_id}))
        return
    if as_json:
        click.echo(json.dumps(summary(plan_run), indent=2))
    else:
        seconds = (plan_run.end_ms - plan_run.start_ms) / 1000
        click.echo(f"{plan_run.result_state} remote run {started.run_id} of {plan_run.plan.name!r} "
                   f"({mode}, {seconds:.1f} s): {started.output_dir}")
    finish(plan_run.result_state)


@remote.command("compare")
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="S", help="Stop waiting for a run after S seconds.")
@click.option("--with-local", is_flag=True, help="Also run the plan locally both ways and show it beside.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON comparison on stdout.")
@PROFILE
def compare_remote(plan_file: Path, timeout: float | None, with_local: bool, as_json: bool,
                   profile: str | None) -> None:
    """Run PLAN's sequential then parallel job in the workspace and compare their run times."""
    show(compare_jobs(plan_file, timeout=timeout, with_local=with_local, profile=profile, say=_say), as_json)


@remote.command()
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@PROFILE
def destroy(plan_file: Path, profile: str | None) -> None:
    """Remove what deploy made for PLAN: its jobs, the cluster it created, its workspace folder."""
    destroy_deployment(plan_file, profile=profile, say=_say)

