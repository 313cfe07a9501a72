"""A plan's life in a workspace: deploy it, run its jobs, compare its modes, destroy it.

What ``nbflow remote`` does, over the SDK calls of :mod:`nbflow.remote.adapter`. Each step says
what it does through ``say`` (one line each; the CLI prints them on stderr) and returns what it
made; what deploy made is recorded in ``.nbflow/remote/<plan>.json`` for the other steps.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databricks.sdk.errors.platform import NotFound

from ..compare import Comparison, compare_locally, figures
from ..errors import InputError
from ..plan import load_plan
from ..project import processed_dir, project_dir
from ..report_html import write_report
from ..runs import MODES, PlanRun
from ..task_spec import new_run_id
from . import adapter
from .adapter import ClusterOptions, Deployment

Say = Callable[[str], None]


def _silent(text: str) -> None:
    """The default ``say``: a library caller hears nothing."""


def deploy_plan(plan_file: Path, *, workspace_dir: str | None = None, cluster: ClusterOptions | None = None,
                form: str = "dag", schedule: bool = False, profile: str | None = None,
                say: Say = _silent) -> Deployment:
    """Upload the plan's notebooks, make sure its cluster runs, and create or update its jobs
    (``form``: ``dag``, ``orchestrator`` or ``both``); job ids of an earlier deploy are kept."""
    options = cluster or ClusterOptions()
    plan, _ = load_plan(plan_file)
    folder = plan_file.resolve().parent
    adapter.check_orchestrators(form, folder)
    w = adapter.connect(profile)
    project = project_dir()
    target = workspace_dir or f"/Shared/nbflow/{plan.name}"
    previous = None
    if Deployment.path(project, plan.name).is_file():  # deployed before: keep its job ids
        previous = Deployment.load(project, plan.name)
    deployment = Deployment(plan.name, w.config.host or "", target)
    if previous is not None:
        deployment.jobs = dict(previous.jobs)
        deployment.cluster_created = previous.cluster_created
    try:
        deployment.notebooks = adapter.upload(w, folder, target, say)
        cluster_id, new_cluster = None, None
        if options.cluster == "job":
            new_cluster = adapter.cluster_spec(w, plan, options)
        else:
            cluster_id, created = adapter.ensure_cluster(w, plan, options, say)
            deployment.cluster_id = cluster_id
            deployment.cluster_created = deployment.cluster_created or created
        forms = ["dag", "orchestrator"] if form == "both" else [form]
        for kind in forms:
            for mode in MODES:
                settings = adapter.job_settings(plan, mode, kind, target, cluster_id, new_cluster, schedule)
                key = mode if kind == "dag" else f"{kind}-{mode}"
                job_id, created = adapter.put_job(w, settings, deployment.jobs.get(key))
                deployment.jobs[key] = job_id
                say(f"{'created' if created else 'updated'} job {settings['name']!r} ({job_id})")
    except BaseException:
        saved = deployment.save(project)
        say(f"deploy stopped; what exists so far is listed in {saved} (nbflow remote destroy {plan_file} removes it)")
        raise
    deployment.save(project)
    return deployment


@dataclass
class RemoteRun:
    """A run started in the workspace: its ids and, once followed to its end, the run as a local
    :class:`PlanRun` (its ``run.json`` and ``report.html`` in ``output_dir``)."""

    run_id: int
    job_id: int
    plan_run: PlanRun | None = None
    output_dir: Path | None = None


def run_job(plan_file: Path, *, mode: str = "sequential", form: str = "dag",
            job_parameters: Mapping[str, str] | None = None, wait: bool = True, timeout: float | None = None,
            profile: str | None = None, say: Say = _silent) -> RemoteRun:
    """Start the deployed job of ``mode`` (``form`` dag or orchestrator) with ``run-now`` and,
    with ``wait``, follow it to its end (``timeout`` seconds at most, then RemoteError) and
    write ``processed/remote-<run-id>/run.json`` (the API's own answer) and ``report.html``."""
    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = Deployment.load(project, plan.name)
    key = mode if form == "dag" else f"orchestrator-{mode}"
    if key not in deployment.jobs:
        raise InputError(f"plan {plan.name!r} has no deployed {form} job for {mode}: "
                         f"nbflow remote deploy {plan_file} --form {form}")
    w = adapter.connect(profile)
    job_id = deployment.jobs[key]
    with adapter.api_call(f"jobs run-now {job_id}"):
        started = w.jobs.run_now(job_id, job_parameters=dict(job_parameters or {}) or None)
    run_id: int = started.response.run_id  # type: ignore[attr-defined]
    say(f"started run {run_id} of job {job_id} ({mode})")
    remote = RemoteRun(run_id, job_id)
    if not wait:
        return remote
    final = adapter.follow(w, run_id, timeout, lambda text: say(f"run {run_id}: {text}"))
    folder = processed_dir(project) / f"remote-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(final.as_dict(), indent=2), encoding="utf-8")
    remote.plan_run = adapter.to_plan_run(w, final, plan, mode, folder)
    remote.output_dir = folder
    write_report([remote.plan_run], folder, f"{plan.name}: remote run {run_id} ({mode})")
    return remote


def compare_jobs(plan_file: Path, *, timeout: float | None = None, with_local: bool = False,
                 profile: str | None = None, say: Say = _silent) -> Comparison:
    """Run the deployed sequential job, then the parallel one, and compare their times (with
    ``with_local``, beside the plan run locally both ways); the report is written."""
    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = Deployment.load(project, plan.name)
    w = adapter.connect(profile)
    folder = processed_dir(project) / f"remote-compare-{new_run_id()}"
    comparison = Comparison(plan.name, folder, [], [])
    sequential_wall = None
    for mode in MODES:
        with adapter.api_call(f"jobs run-now {deployment.jobs[mode]}"):
            run_id: int = w.jobs.run_now(deployment.jobs[mode]).response.run_id  # type: ignore[attr-defined]
        say(f"{mode}: run {run_id} started")
        final = adapter.follow(w, run_id, timeout, _prefixed(mode, say))
        plan_run = adapter.to_plan_run(w, final, plan, f"remote {mode}", folder / mode)
        if mode == "sequential":
            sequential_wall = (plan_run.end_ms - plan_run.start_ms) / 1000
        comparison.runs.append(plan_run)
        width = 1 if mode == "sequential" else max(len(plan.tasks), 1)
        comparison.rows.append({**figures(plan_run, sequential_wall, width),
                                "execution_s": round((final.execution_duration or 0) / 1000, 2) or None})
    if with_local:
        local = compare_locally(plan_file, MODES, 1, None, folder / "local", folder.name, say)
        comparison.runs += local.runs
        comparison.rows += [{**row, "mode": f"local {row['mode']}"} for row in local.rows]
    comparison.write(f"{plan.name}: remote sequential against parallel")
    return comparison


def _prefixed(mode: str, say: Say) -> Say:
    return lambda text: say(f"{mode}: {text}")


def destroy_deployment(plan_file: Path, *, profile: str | None = None, say: Say = _silent) -> None:
    """Remove what deploy made for the plan: its jobs, the cluster it created, its workspace
    folder, and its record (what is already gone is said and skipped)."""
    plan, _ = load_plan(plan_file)
    project = project_dir()
    deployment = Deployment.load(project, plan.name)
    w = adapter.connect(profile)
    for key, job_id in deployment.jobs.items():
        _delete(f"jobs delete {job_id}", functools.partial(w.jobs.delete, job_id),
                f"deleted job {job_id} ({key})", f"job {job_id} ({key}) was already gone", say)
    if deployment.cluster_id and deployment.cluster_created:
        cluster_id = deployment.cluster_id
        _delete(f"clusters permanent-delete {cluster_id}", lambda: w.clusters.permanent_delete(cluster_id),
                f"deleted cluster {cluster_id}", f"cluster {cluster_id} was already gone", say)
    folder = deployment.workspace_dir
    _delete(f"workspace delete {folder}", lambda: w.workspace.delete(folder, recursive=True),
            f"deleted {folder}", f"{folder} was already gone", say)
    Deployment.path(project, plan.name).unlink(missing_ok=True)


def _delete(call: str, action: Callable[[], Any], done: str, gone: str, say: Say) -> None:
    """One delete call; something already gone is not an error."""
    with adapter.api_call(call):
        try:
            action()
        except NotFound:
            say(gone)
            return
    say(done)
