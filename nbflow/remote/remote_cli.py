"""``nbflow remote``: deploy a plan to a Databricks workspace, run it there, compare, destroy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..cli_errors import handle_errors
from ..errors import InputError

if TYPE_CHECKING:
    from ..plan import Plan

PROFILE = click.option("--profile", metavar="NAME",
                       help="A ~/.databrickscfg profile [default: DATABRICKS_HOST/TOKEN, else the DEFAULT profile].")


def _say(text: str) -> None:
    click.echo(f"nbflow remote: {text}", err=True)


@click.group()
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
@handle_errors
def deploy(plan_file: Path, workspace_dir: str | None, cluster: str, spark_version: str | None,
           node_type: str | None, num_workers: int | None, autotermination_minutes: int | None, form: str,
           schedule: bool,
           profile: str | None) -> None:
    """Upload PLAN's notebooks, make sure its cluster runs, and create or update its jobs."""
    from ..plan import load_plan
    from ..project import project_dir
    from . import adapter

    plan, _ = load_plan(plan_file)
    folder = plan_file.resolve().parent
    adapter.check_orchestrators(form, folder)
    w = adapter.connect(profile)
    project = project_dir()
    target = workspace_dir or f"/Shared/nbflow/{plan.name}"
    previous = None
    if adapter.Deployment.path(project, plan.name).is_file():  # deployed before: keep its job ids
        previous = adapter.Deployment.load(project, plan.name)
    deployment = adapter.Deployment(plan.name, w.config.host or "", target)
    if previous is not None:
        deployment.jobs = dict(previous.jobs)
        deployment.cluster_created = previous.cluster_created
    try:
        deployment.notebooks = adapter.upload(w, folder, target, _say)
        options = adapter.ClusterOptions(cluster, spark_version, node_type, num_workers, autotermination_minutes)
        cluster_id, new_cluster = None, None
        if cluster == "job":
            new_cluster = adapter.cluster_spec(w, plan, options)
        else:
            cluster_id, created = adapter.ensure_cluster(w, plan, options, _say)
            deployment.cluster_id = cluster_id
            deployment.cluster_created = deployment.cluster_created or created
        forms = ["dag", "orchestrator"] if form == "both" else [form]
        for kind in forms:
            for mode in adapter.MODES:
                settings = adapter.job_settings(plan, mode, kind, target, cluster_id, new_cluster, schedule)
                key = mode if kind == "dag" else f"{kind}-{mode}"
                job_id, created = adapter.put_job(w, settings, deployment.jobs.get(key))
                deployment.jobs[key] = job_id
                _say(f"{'created' if created else 'updated'} job {settings['name']!r} ({job_id})")
    finally:
        saved = deployment.save(project)
        if sys.exc_info()[0] is not None:
            _say(f"deploy stopped; what exists so far is listed in {saved} "
                 f"(nbflow remote destroy {plan_file} removes it)")
    click.echo(json.dumps({"workspace_dir": target, "cluster_id": deployment.cluster_id, "jobs": deployment.jobs},
                          indent=2))


@remote.command("run")
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@click.option("--mode", type=click.Choice(["sequential", "parallel"]), default="sequential", show_default=True)
@click.option("--form", type=click.Choice(["dag", "orchestrator"]), default="dag", show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the run until it ends.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="S", help="Stop waiting after S seconds.")
@click.option("-p", "--parameter", "params", multiple=True, metavar="NAME=VALUE", help="A job parameter.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary on stdout.")
@PROFILE
@handle_errors
def run_remote(plan_file: Path, mode: str, form: str, wait: bool, timeout: float | None, params: tuple[str, ...],
               as_json: bool, profile: str | None) -> None:
    """Run PLAN's deployed job for MODE in the workspace; write run.json and report.html locally."""
    from .. import params as params_mod
    from ..plan import load_plan
    from ..project import project_dir
    from . import adapter

    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = adapter.Deployment.load(project, plan.name)
    key = mode if form == "dag" else f"orchestrator-{mode}"
    if key not in deployment.jobs:
        raise InputError(f"plan {plan.name!r} has no deployed {form} job for {mode}: "
                         f"nbflow remote deploy {plan_file} --form {form}")
    w = adapter.connect(profile)
    job_parameters = {k: p.widget_value for k, p in params_mod.from_command_line(None, params).items()}
    with adapter.api_call(f"jobs run-now {deployment.jobs[key]}"):
        started = w.jobs.run_now(deployment.jobs[key], job_parameters=job_parameters or None)
    run_id: int = started.response.run_id  # type: ignore[attr-defined]
    _say(f"started run {run_id} of job {deployment.jobs[key]} ({mode})")
    if not wait:
        click.echo(json.dumps({"run_id": run_id, "job_id": deployment.jobs[key]}))
        return
    summary = _report_run(w, run_id, plan, mode, project, timeout, as_json)
    if summary["status"] not in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
        sys.exit(1)


def _report_run(w: Any, run_id: int, plan: Plan, mode: str, project: Path, timeout: float | None,
                as_json: bool) -> dict[str, Any]:
    """Follow a remote run to its end; write its run.json and report.html; print its summary."""
    from ..project import processed_dir
    from ..report import summary
    from ..report_html import write_report
    from . import adapter

    final = adapter.follow(w, run_id, timeout, lambda text: _say(f"run {run_id}: {text}"))
    folder = processed_dir(project) / f"remote-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(final.as_dict(), indent=2), encoding="utf-8")
    plan_run = adapter.to_plan_run(w, final, plan, mode, folder)
    write_report([plan_run], folder, f"{plan.name}: remote run {run_id} ({mode})")
    result = summary(plan_run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        seconds = (plan_run.end_ms - plan_run.start_ms) / 1000
        click.echo(f"{plan_run.result_state} remote run {run_id} of {plan.name!r} ({mode}, {seconds:.1f} s): "
                   f"{folder}")
    return result


@remote.command("compare")
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="S", help="Stop waiting for a run after S seconds.")
@click.option("--with-local", is_flag=True, help="Also run the plan locally both ways and show it beside.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON comparison on stdout.")
@PROFILE
@handle_errors
def compare_remote(plan_file: Path, timeout: float | None, with_local: bool, as_json: bool,
                   profile: str | None) -> None:
    """Run PLAN's sequential then parallel job in the workspace and compare their run times."""
    from ..compare import figures
    from ..plan import load_plan
    from ..plan_cli import emit_comparison, local_comparison
    from ..project import processed_dir, project_dir
    from ..runner import new_run_id
    from . import adapter

    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = adapter.Deployment.load(project, plan.name)
    w = adapter.connect(profile)
    folder = processed_dir(project) / f"remote-compare-{new_run_id()}"
    runs, rows = [], []
    sequential_wall = None
    for mode in adapter.MODES:
        with adapter.api_call(f"jobs run-now {deployment.jobs[mode]}"):
            run_id: int = w.jobs.run_now(deployment.jobs[mode]).response.run_id  # type: ignore[attr-defined]
        _say(f"{mode}: run {run_id} started")
        final = adapter.follow(w, run_id, timeout, _prefixed(mode))
        plan_run = adapter.to_plan_run(w, final, plan, f"remote {mode}", folder / mode)
        if mode == "sequential":
            sequential_wall = (plan_run.end_ms - plan_run.start_ms) / 1000
        runs.append(plan_run)
        width = 1 if mode == "sequential" else max(len(plan.tasks), 1)
        rows.append({**figures(plan_run, sequential_wall, width),
                     "execution_s": round((final.execution_duration or 0) / 1000, 2) or None})
    if with_local:
        _, local_runs, local_rows = local_comparison(plan_file, adapter.MODES, 1, None, folder / "local",
                                                     folder.name)
        runs += local_runs
        rows += [{**row, "mode": f"local {row['mode']}"} for row in local_rows]
    emit_comparison(plan.name, folder, runs, rows, f"{plan.name}: remote sequential against parallel", as_json)


def _prefixed(mode: str) -> Any:
    return lambda text: _say(f"{mode}: {text}")


@remote.command()
@click.argument("plan_file", type=click.Path(path_type=Path), metavar="PLAN")
@PROFILE
@handle_errors
def destroy(plan_file: Path, profile: str | None) -> None:
    """Remove what deploy made for PLAN: its jobs, the cluster it created, its workspace folder."""
    from databricks.sdk.errors.platform import NotFound

    from ..plan import load_plan
    from ..project import project_dir
    from . import adapter

    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = adapter.Deployment.load(project, plan.name)
    w = adapter.connect(profile)
    for key, job_id in deployment.jobs.items():
        with adapter.api_call(f"jobs delete {job_id}"):
            try:
                w.jobs.delete(job_id)
                _say(f"deleted job {job_id} ({key})")
            except NotFound:
                _say(f"job {job_id} ({key}) was already gone")
    if deployment.cluster_id and deployment.cluster_created:
        with adapter.api_call(f"clusters permanent-delete {deployment.cluster_id}"):
            try:
                w.clusters.permanent_delete(deployment.cluster_id)
                _say(f"deleted cluster {deployment.cluster_id}")
            except NotFound:
                _say(f"cluster {deployment.cluster_id} was already gone")
    with adapter.api_call(f"workspace delete {deployment.workspace_dir}"):
        try:
            w.workspace.delete(deployment.workspace_dir, recursive=True)
            _say(f"deleted {deployment.workspace_dir}")
        except NotFound:
            _say(f"{deployment.workspace_dir} was already gone")
    adapter.Deployment.path(project, plan.name).unlink(missing_ok=True)
