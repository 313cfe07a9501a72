"""The remote adapter: a plan sent to a Databricks workspace with the official ``databricks-sdk``.

``deploy`` uploads the plan's notebooks (Workspace API), makes sure an all-purpose cluster runs
(Clusters API) unless job clusters are asked for, and creates or updates, by name, the plan's jobs
(Jobs API): the plan's DAG run sequentially (a chain) and in parallel (its own dependencies) and,
with orchestration notebooks, one job per mode that runs that notebook. ``run`` starts a job and
follows it; ``compare`` runs both modes and compares them; ``destroy`` removes what ``deploy``
made. Authentication is the SDK's own (environment, ``~/.databrickscfg`` profiles); the token
is never printed or written. What ``deploy`` made is recorded in ``.nbflow/remote/<plan>.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import inspect
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.errors.platform import NotFound
from databricks.sdk.service import jobs as jobs_api
from databricks.sdk.service.jobs import JobSettings
from databricks.sdk.service.workspace import ImportFormat, Language

from ..errors import InputError, RemoteError
from ..notebooks import SOURCE_HEADER
from ..plan import Cluster, Plan, Task
from ..project import PROCESSED, deployments_dir
from ..runs import Attempt, CellError, LifeCycleState, NotebookResult, PlanRun, TaskRun, TaskState, task_state

ORCHESTRATORS = {"sequential": "orchestrate_sequential", "parallel": "orchestrate_parallel"}
CLUSTER_WAIT = dt.timedelta(minutes=20)
SKIP_FOLDERS = {PROCESSED, "__pycache__", "node_modules"}


@contextlib.contextmanager
def api_call(what: str) -> Iterator[None]:
    """Turn the SDK's errors into one line naming the call (never the token)."""

    try:
        yield
    except DatabricksError as exc:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        raise RemoteError(f"{what}: {code}: {exc}") from None
    except ValueError as exc:  # the SDK's configuration errors (no host, unknown profile...)
        raise RemoteError(f"{what}: {exc}") from None


def connect(profile: str | None = None) -> WorkspaceClient:
    """A client configured the SDK's way: arguments, then DATABRICKS_* variables, then profiles."""

    with api_call("connecting to the workspace"):
        return WorkspaceClient(profile=profile) if profile else WorkspaceClient()


@dataclass
class Deployment:
    """What deploy made, kept in ``.nbflow/remote/<plan>.json`` for run, compare and destroy."""

    plan: str
    host: str
    workspace_dir: str
    cluster_id: str | None = None
    cluster_created: bool = False
    jobs: dict[str, int] = field(default_factory=dict)
    notebooks: list[str] = field(default_factory=list)

    @staticmethod
    def path(project: Path, plan_name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in plan_name)
        return deployments_dir(project) / f"{safe}.json"

    def save(self, project: Path) -> Path:
        target = self.path(project, self.plan)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.__dict__, indent=2), encoding="utf-8")
        return target

    @classmethod
    def load(cls, project: Path, plan_name: str) -> Deployment:
        source = cls.path(project, plan_name)
        try:
            return cls(**json.loads(source.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(f"plan {plan_name!r} is not deployed from this project (no {source}): "
                             f"run nbflow remote deploy first") from None


def job_name(plan: Plan, mode: str, form: str) -> str:
    return f"{plan.name} [{mode}]" if form == "dag" else f"{plan.name} [{ORCHESTRATORS[mode]}]"


# -- deploy ---------------------------------------------------------------------------------------
def notebook_files(folder: Path) -> list[Path]:
    """The notebooks to upload: Databricks source ``.py`` and ``.ipynb`` files under the plan's folder."""
    found = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") or p in SKIP_FOLDERS for p in parts) or not path.is_file():
            continue
        if path.suffix == ".ipynb" or (path.suffix == ".py" and _is_source_notebook(path)):
            found.append(path)
    return found


def _is_source_notebook(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as handle:
        return handle.readline().rstrip() == SOURCE_HEADER


def upload(w: WorkspaceClient, folder: Path, workspace_dir: str, say: Callable[[str], None]) -> list[str]:
    """Import every notebook under ``folder`` below ``workspace_dir``, extension removed."""

    uploaded = []
    for path in notebook_files(folder):
        relative = path.relative_to(folder).with_suffix("").as_posix()
        target = f"{workspace_dir.rstrip('/')}/{relative}"
        parent = target.rsplit("/", 1)[0]
        with api_call(f"workspace mkdirs {parent}"):
            w.workspace.mkdirs(parent)
        form = ImportFormat.JUPYTER if path.suffix == ".ipynb" else ImportFormat.SOURCE
        with api_call(f"workspace import {target}"):
            w.workspace.upload(target, path.read_bytes(), format=form,
                               language=Language.PYTHON if form == ImportFormat.SOURCE else None, overwrite=True)
        uploaded.append(target)
        say(f"uploaded {path.relative_to(folder)} -> {target}")
    return uploaded


@dataclass(frozen=True)
class ClusterOptions:
    """deploy's cluster options; those left None come from the plan's ``cluster``, then defaults."""

    cluster: str = "new"  # new (create or reuse one named for the plan), job (job clusters), or a cluster id
    spark_version: str | None = None
    node_type: str | None = None
    num_workers: int | None = None
    autotermination_minutes: int | None = None


def cluster_spec(w: WorkspaceClient, plan: Plan, options: ClusterOptions) -> dict[str, Any]:
    """The compute of the plan's cluster: the options, else the plan's ``cluster``, else the
    workspace's latest LTS runtime and smallest node type."""

    planned = plan.cluster or Cluster()
    version = options.spark_version or planned.spark_version
    if not version:
        with api_call("clusters spark-versions"):
            try:
                version = w.clusters.select_spark_version(latest=True, long_term_support=True)
            except ValueError:  # no LTS among them: the first one offered
                versions = w.clusters.spark_versions().versions or []
                if not versions or not versions[0].key:
                    raise RemoteError("clusters spark-versions: the workspace offers none") from None
                version = versions[0].key
    node = options.node_type or planned.node_type_id
    if not node:
        with api_call("clusters list-node-types"):
            types = [t for t in w.clusters.list_node_types().node_types or [] if not t.is_deprecated]
        if not types:
            raise RemoteError("clusters list-node-types: the workspace offers none; pass --node-type")
        node = min(types, key=lambda t: (t.memory_mb or 0, t.num_cores or 0)).node_type_id
    spec: dict[str, Any] = {
        "spark_version": version, "node_type_id": node,
        "num_workers": planned.num_workers if options.num_workers is None else options.num_workers,
        "autotermination_minutes": planned.autotermination_minutes if options.autotermination_minutes is None
        else options.autotermination_minutes,
    }
    spec.update({k: v for k, v in (("spark_conf", planned.spark_conf), ("custom_tags", planned.custom_tags)) if v})
    return spec


def ensure_cluster(w: WorkspaceClient, plan: Plan, options: ClusterOptions,
                   say: Callable[[str], None]) -> tuple[str, bool]:
    """The all-purpose cluster the jobs run on, RUNNING: (id, whether deploy created it)."""
    if options.cluster not in ("new", "job"):
        with api_call(f"clusters start {options.cluster}"):
            w.clusters.ensure_cluster_is_running(options.cluster)
        return options.cluster, False
    name = f"nbflow-{plan.name}"
    with api_call("clusters list"):
        existing = [c for c in w.clusters.list() if c.cluster_name == name]
    if existing and existing[0].cluster_id:
        cluster_id = existing[0].cluster_id
        say(f"cluster {name} ({cluster_id}) exists; making sure it runs")
        with api_call(f"clusters start {cluster_id}"):
            w.clusters.ensure_cluster_is_running(cluster_id)
        return cluster_id, False
    spec = cluster_spec(w, plan, options)
    say(f"creating cluster {name} ({spec['spark_version']}, {spec['node_type_id']}, "
        f"{spec['num_workers']} workers); waiting until RUNNING")
    with api_call(f"clusters create {name}"):
        details = w.clusters.create_and_wait(cluster_name=name, timeout=CLUSTER_WAIT, **spec)
    assert details.cluster_id is not None
    return details.cluster_id, True


JOB_CLUSTER_KEY = "nbflow"


def job_settings(plan: Plan, mode: str, form: str, workspace_dir: str, cluster_id: str | None,
                 new_cluster: dict[str, Any] | None, schedule: bool) -> dict[str, Any]:
    """The Jobs API settings of one of the plan's jobs (``create`` / ``reset`` body): on the
    all-purpose cluster ``cluster_id``, or on a job cluster made from ``new_cluster``."""
    base = workspace_dir.rstrip("/")
    compute: dict[str, Any] = {"existing_cluster_id": cluster_id} if cluster_id else {
        "job_cluster_key": JOB_CLUSTER_KEY}

    def notebook_path(local: str) -> str:
        return f"{base}/{Path(local).with_suffix('').as_posix()}"

    if form == "orchestrator":
        tasks = [{"task_key": ORCHESTRATORS[mode], "notebook_task": {
            "notebook_path": f"{base}/{ORCHESTRATORS[mode]}", "source": "WORKSPACE"}, **compute}]
    else:
        order = plan.order()
        tasks = []
        for i, key in enumerate(order):
            task = plan.task(key)
            # Sequential: a chain in the plan's order. Parallel: the plan's own dependencies.
            deps = ([order[i - 1]] if i else []) if mode == "sequential" else task.depends_on
            entry: dict[str, Any] = {
                "task_key": key, "description": task.description or None,
                "depends_on": [{"task_key": d} for d in deps], "run_if": task.run_if,
                "notebook_task": {"notebook_path": notebook_path(task.notebook), "source": "WORKSPACE",
                                  "base_parameters": {k: str(v) for k, v in task.parameters.items()}},
                "timeout_seconds": task.timeout_seconds, "max_retries": task.max_retries,
                "min_retry_interval_millis": task.min_retry_interval_millis,
                "retry_on_timeout": task.retry_on_timeout, "disabled": task.disabled or None, **compute,
            }
            tasks.append({k: v for k, v in entry.items() if v is not None})
    settings: dict[str, Any] = {
        "name": job_name(plan, mode, form), "tasks": tasks, "max_concurrent_runs": plan.max_concurrent_runs,
        "timeout_seconds": plan.timeout_seconds, "format": "MULTI_TASK",
        "parameters": [{"name": p.name, "default": "" if p.default is None else str(p.default)}
                       for p in plan.parameters],
        "tags": {"nbflow-plan": plan.name, "nbflow-mode": mode},
    }
    if not cluster_id:
        settings["job_clusters"] = [{"job_cluster_key": JOB_CLUSTER_KEY, "new_cluster": new_cluster or {}}]
    if schedule and plan.schedule is not None:
        settings["schedule"] = plan.schedule.model_dump()
    return settings


def put_job(w: WorkspaceClient, settings: dict[str, Any], known: int | None) -> tuple[int, bool]:
    """Create the job, or reset the one with its name (or id): (job id, created)."""

    name = settings["name"]
    job_id = known
    if job_id is not None:

        with api_call(f"jobs get {job_id}"):
            try:
                w.jobs.get(job_id)
            except NotFound:  # deleted in the workspace since: found by name or created again
                job_id = None
    if job_id is None:
        with api_call(f"jobs list name={name!r}"):
            job_id = next((j.job_id for j in w.jobs.list(name=name) if j.job_id is not None), None)
    new = JobSettings.from_dict(settings)
    if job_id is not None:
        with api_call(f"jobs reset {job_id} ({name})"):
            w.jobs.reset(job_id, new)
        return job_id, False
    accepted = inspect.signature(w.jobs.create).parameters
    values = {f.name: getattr(new, f.name) for f in dataclasses.fields(new)
              if f.name in accepted and getattr(new, f.name) is not None}
    with api_call(f"jobs create {name}"):
        created = w.jobs.create(**values)
    assert created.job_id is not None
    return created.job_id, True


# -- run ------------------------------------------------------------------------------------------
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


def follow(w: WorkspaceClient, run_id: int, timeout: float | None, on_change: Callable[[str], None]) -> Any:
    """Poll ``runs/get`` until the run ends, reporting each task state change; the final Run."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout if timeout else None
    delay = 0.5
    while True:
        with api_call(f"jobs runs/get {run_id}"):
            run = w.jobs.get_run(run_id)
        for task in run.tasks or []:
            state = task.state
            text = ""
            if state is not None:
                life = state.life_cycle_state.value if state.life_cycle_state else ""
                text = state.result_state.value if state.result_state else life
            if task.task_key and seen.get(task.task_key) != text:
                seen[task.task_key] = text
                on_change(f"{task.task_key}: {text}")
        life = run.state.life_cycle_state.value if run.state and run.state.life_cycle_state else ""
        if life in TERMINAL:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise RemoteError(f"run {run_id} did not finish within {timeout:.0f} s (it goes on in the workspace; "
                              f"runs/cancel stops it)")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def to_plan_run(w: WorkspaceClient, run: jobs_api.Run, plan: Plan, mode: str, output_dir: Path) -> PlanRun:
    """A finished remote run as a local :class:`PlanRun`, for the same run.json, report and figures."""
    tasks: dict[str, TaskRun] = {}
    by_key = {t.task_key: t for t in plan.tasks}
    for remote in run.tasks or []:
        key = remote.task_key or ""
        local = by_key.get(key)
        if local is None:  # the orchestrator form: one task that runs a notebook

            local = Task(task_key=key, notebook=(remote.notebook_task.notebook_path if remote.notebook_task
                                                 else key))
        state = remote.state
        status = _state(state)
        output = None
        error: CellError | None = None
        if remote.run_id is not None and remote.start_time:
            with api_call(f"jobs runs/get-output {remote.run_id}"):
                got = w.jobs.get_run_output(remote.run_id)
            output = got.notebook_output.result if got.notebook_output else None
            if got.error:
                error = CellError(None, "RemoteError", got.error)
        result = NotebookResult(notebook=local.notebook, output=None, status=status, exit_value=output,
                                task_key=key)
        task_run = TaskRun(local, remote.run_id or 0, status,
                           reason=(state.state_message or "") if state else "")
        if remote.start_time:
            task_run.attempts.append(Attempt(remote.attempt_number or 0, status, remote.start_time,
                                             remote.end_time or remote.start_time, None, result, error))
        tasks[key] = task_run
    result_state = _state(run.state)
    start = run.start_time or 0
    end = run.end_time or start
    return PlanRun(plan, str(run.run_id), output_dir, mode, tasks, start, end, result_state)


def _state(state: jobs_api.RunState | None) -> TaskState:
    """A remote run's or task's state: its result if it has one, else where it is in its life."""
    if state is not None and state.result_state is not None:
        return task_state(state.result_state.value)
    if state is not None and state.life_cycle_state is not None:
        return task_state(state.life_cycle_state.value)
    return LifeCycleState.UNKNOWN


def check_orchestrators(form: str, folder: Path) -> None:
    """The orchestrator form needs orchestrate_sequential and orchestrate_parallel beside the plan."""
    if form in ("orchestrator", "both"):
        missing = [n for n in ORCHESTRATORS.values()
                   if not any((folder / f"{n}{s}").is_file() for s in (".py", ".ipynb"))]
        if missing:
            raise InputError(f"--form {form}: no {' or '.join(missing)} notebook next to the plan in {folder}")

