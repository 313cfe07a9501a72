"""The jobs and runs of the local workspace (Jobs API 2.1/2.2): what the jobs endpoints answer.

:class:`JobsStore` keeps the jobs (create, get, list, reset, update, delete, with the checks
``jobs/create`` makes) and starts, lists, shows and cancels their runs, over three parts:
:mod:`~nbflow.serve.jobs_records` (the records and their files), :mod:`~nbflow.serve.run_queue`
(``max_concurrent_runs``, the queue, cancellation) and :mod:`~nbflow.serve.run_execution` (a run on
nbflow's scheduler in a thread). ``idempotency_token`` returns the existing run.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

from ..plan import PlanError, plan_from_job
from .api_errors import ApiError
from .clusters_store import ClustersStore
from .jobs_records import ACTIVE, JobRecords, now_ms
from .run_execution import RunExecutor
from .run_queue import RunQueue
from .workspace_store import WorkspaceStore

LIST_LIMIT = 25
# How long a stopping server waits for its cancelled runs to end before it closes the pool (which
# kills the workers that did not stop).
STOP_GRACE_S = 5.0


class JobsStore:
    def __init__(self, root: Path, workspace: WorkspaceStore, clusters: ClustersStore, project: Path,
                 cluster_engine: str) -> None:
        self.records = JobRecords(root)
        self.queue = RunQueue(self.records)
        self.executor = RunExecutor(root, self.records, self.queue, workspace, clusters, project, cluster_engine)

    # -- jobs -----------------------------------------------------------------------------------
    def create(self, settings: dict[str, Any], api: str) -> int:
        settings = _defaults(settings, api)
        _validate(settings)
        records = self.records
        with records.lock:
            job_id = records.new_id()
            records.jobs[job_id] = {"job_id": job_id, "created_time": now_ms(), "creator_user_name": "nbflow",
                                    "run_as_user_name": "nbflow", "settings": settings}
            records.save_jobs()
        return job_id

    def get(self, job_id: Any) -> dict[str, Any]:
        with self.records.lock:
            job = self.records.jobs.get(_int(job_id, "job_id"))
            if job is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
            return copy.deepcopy(job)

    def list_jobs(self, name: str | None, limit: int, page_token: str | None) -> dict[str, Any]:
        with self.records.lock:
            jobs = [copy.deepcopy(j) for j in sorted(self.records.jobs.values(), key=lambda j: j["job_id"])
                    if name is None or j["settings"].get("name", "").lower() == name.lower()]
        return _page(jobs, "jobs", limit, page_token)

    def reset(self, job_id: Any, settings: dict[str, Any]) -> None:
        job = self.get(job_id)
        settings = _defaults(settings, "2.2" if job["settings"].get("queue", {}).get("enabled") else "2.1")
        _validate(settings)
        self._replace_settings(job["job_id"], settings)

    def update(self, job_id: Any, new: dict[str, Any], remove: list[str]) -> None:
        job = self.get(job_id)
        settings = job["settings"]
        for key, value in (new or {}).items():
            if key in ("tasks", "job_clusters") and isinstance(value, list):
                field = "task_key" if key == "tasks" else "job_cluster_key"
                merged = {item[field]: item for item in settings.get(key, [])}
                merged.update({item[field]: item for item in value})  # arrays merge by key
                settings[key] = list(merged.values())
            else:
                settings[key] = value
        for path in remove or []:
            head, _, key = path.partition("/")
            if key and head in ("tasks", "job_clusters"):
                field = "task_key" if head == "tasks" else "job_cluster_key"
                settings[head] = [item for item in settings.get(head, []) if item.get(field) != key]
            else:
                settings.pop(path, None)
        _validate(settings)
        self._replace_settings(job["job_id"], settings)

    def _replace_settings(self, job_id: int, settings: dict[str, Any]) -> None:
        with self.records.lock:
            self.records.jobs[job_id]["settings"] = settings
            self.records.save_jobs()

    def delete(self, job_id: Any) -> None:
        job = self.get(job_id)
        with self.records.lock:
            del self.records.jobs[job["job_id"]]
            self.records.save_jobs()

    def scheduled(self) -> list[tuple[int, dict[str, Any]]]:
        """The jobs with a schedule, for :class:`nbflow.serve.schedules.ScheduleRunner`."""
        with self.records.lock:
            return [(job_id, dict(job["settings"]["schedule"])) for job_id, job in self.records.jobs.items()
                    if isinstance(job["settings"].get("schedule"), dict)]

    def fire_schedule(self, job_id: int) -> None:
        with contextlib.suppress(ApiError):  # deleted since the schedule was read: nothing to run
            self.run_now({"job_id": job_id}, trigger="PERIODIC")

    # -- runs -----------------------------------------------------------------------------------
    def run_now(self, body: dict[str, Any], trigger: str = "ONE_TIME") -> dict[str, Any]:
        job = self.get(body.get("job_id"))
        token = body.get("idempotency_token")
        with self.records.lock:
            if token and token in self.records.tokens:
                return {"run_id": self.records.tokens[token], "number_in_job": self.records.tokens[token]}
        settings = job["settings"]
        declared = {p["name"] for p in settings.get("parameters", [])}
        job_parameters = {str(k): str(v) for k, v in (body.get("job_parameters") or {}).items()}
        unknown = sorted(set(job_parameters) - declared)
        if unknown:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"Job {job['job_id']} has no job parameter {unknown[0]!r} "
                           f"(it has: {', '.join(sorted(declared)) or 'none'})")
        notebook_params = {str(k): str(v) for k, v in (body.get("notebook_params") or {}).items()}
        if notebook_params:  # they reach every notebook task, over its base parameters
            for task in settings.get("tasks", []):
                if "notebook_task" in task:
                    base = task["notebook_task"].setdefault("base_parameters", {})
                    base.update(notebook_params)
        run_id = self._start(settings, job["job_id"], "JOB_RUN", trigger, job_parameters,
                             {k: v for k, v in body.items() if k in ("job_parameters", "notebook_params")})
        self._remember(token, run_id)
        return {"run_id": run_id, "number_in_job": run_id}

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("idempotency_token")
        with self.records.lock:
            if token and token in self.records.tokens:
                return {"run_id": self.records.tokens[token]}
        settings = {"name": body.get("run_name") or "Untitled", "tasks": body.get("tasks") or [],
                    "timeout_seconds": body.get("timeout_seconds") or 0, "max_concurrent_runs": 1000}
        _validate(settings)
        run_id = self._start(settings, None, "SUBMIT_RUN", "ONE_TIME", {}, {})
        self._remember(token, run_id)
        return {"run_id": run_id}

    def _remember(self, token: str | None, run_id: int) -> None:
        """An idempotency token's run: the same request again returns it."""
        if token:
            with self.records.lock:
                self.records.tokens[token] = run_id
                self.records.save_jobs()

    def _start(self, settings: dict[str, Any], job_id: int | None, run_type: str, trigger: str,
               job_parameters: dict[str, str], overriding: dict[str, Any]) -> int:
        records = self.records
        with records.lock:
            run_id = records.new_id()
            tasks = [{"task_key": t["task_key"], "run_id": records.new_id(), "state": {"life_cycle_state": "PENDING"},
                      "depends_on": t.get("depends_on", []), "run_if": t.get("run_if", "ALL_SUCCESS"),
                      "notebook_task": t.get("notebook_task"), "existing_cluster_id": t.get("existing_cluster_id"),
                      "start_time": 0, "end_time": 0, "attempt_number": 0} for t in settings.get("tasks", [])]
            params = {p["name"]: str(p.get("default", "")) for p in settings.get("parameters", [])}
            params.update(job_parameters)
            run: dict[str, Any] = {
                "run_id": run_id, "job_id": job_id, "number_in_job": run_id, "original_attempt_run_id": run_id,
                "run_name": settings.get("name", "Untitled"), "run_type": run_type, "trigger": trigger,
                "creator_user_name": "nbflow", "format": "MULTI_TASK", "start_time": now_ms(), "end_time": 0,
                "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0, "run_duration": 0,
                "state": {"life_cycle_state": "PENDING", "state_message": ""},
                "job_parameters": [{"name": k, "default": str(p.get("default", "")), "value": params[k]}
                                   for p in settings.get("parameters", []) for k in [p["name"]]],
                "overriding_parameters": overriding, "tasks": tasks,
                "run_page_url": f"#job/{job_id}/run/{run_id}",
            }
            records.runs[run_id] = run
            admitted = self.queue.admit(run, settings)
            records.save_run(run_id)
            if admitted:
                self.executor.launch(run_id, settings, params, settings.get("max_concurrent_runs", 1))
        return run_id

    def get_run(self, run_id: Any) -> dict[str, Any]:
        """A job run, or a task run (by its own run id) in the same shape."""
        wanted = _int(run_id, "run_id")
        with self.records.lock:
            runs = self.records.runs
            if wanted in runs:
                return copy.deepcopy(runs[wanted])
            for run in runs.values():
                for task in run.get("tasks", []):
                    if task["run_id"] == wanted:
                        return {**copy.deepcopy(task), "job_id": run["job_id"], "run_type": run["run_type"],
                                "run_name": task["task_key"], "parent_run_id": run["run_id"], "tasks": []}
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")

    def get_output(self, run_id: Any) -> dict[str, Any]:
        run = self.get_run(run_id)
        if run.get("tasks"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           "Retrieving the output of runs with multiple tasks is not supported. Please retrieve the "
                           "output of each individual task run instead.")
        output: dict[str, Any] = {"metadata": run}
        if run.get("notebook_output"):
            output["notebook_output"] = run["notebook_output"]
        errors = [a.get("error") for a in run.get("attempts", []) if a.get("error")]
        if errors and run["state"].get("result_state") not in ("SUCCESS", None):
            error = errors[-1]
            output["error"] = f"{error.get('ename')}: {error.get('evalue')}"
            output["error_trace"] = "\n".join(error.get("traceback") or []) or output["error"]
        return output

    def list_runs(self, query: dict[str, str]) -> dict[str, Any]:
        job_id = int(query["job_id"]) if query.get("job_id") else None
        active_only = query.get("active_only") == "true"
        completed_only = query.get("completed_only") == "true"
        if active_only and completed_only:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "active_only and completed_only are mutually exclusive")
        with self.records.lock:
            runs = [copy.deepcopy(r) for r in sorted(self.records.runs.values(), key=lambda r: -r["run_id"])
                    if (job_id is None or r["job_id"] == job_id)
                    and (not active_only or r["state"]["life_cycle_state"] in ACTIVE)
                    and (not completed_only or r["state"]["life_cycle_state"] not in ACTIVE)
                    and (not query.get("run_type") or r["run_type"] == query["run_type"])]
        if query.get("expand_tasks") != "true":
            for r in runs:
                r.pop("tasks", None)
        return _page(runs, "runs", int(query.get("limit") or 20) or LIST_LIMIT, query.get("page_token"))

    def cancel(self, run_id: Any) -> None:
        self.queue.cancel(self.get_run(run_id))

    def cancel_all(self, job_id: Any) -> None:
        with self.records.lock:
            ids = [r["run_id"] for r in self.records.runs.values() if r["job_id"] == _int(job_id, "job_id")
                   and r["state"]["life_cycle_state"] in ACTIVE]
        for run_id in ids:
            self.cancel(run_id)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Cancel every active run (the server is stopping) and record how each ended; nothing is
        left running: workers that do not stop within ``grace`` are stopped with the pool."""
        self.queue.stop()
        self.executor.close(grace)

    def wait(self, run_id: int, timeout: float) -> dict[str, Any]:
        """Block until a run is no longer active (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self.records.changed:
            while self.records.runs[run_id]["state"]["life_cycle_state"] in ACTIVE and time.monotonic() < deadline:
                self.records.changed.wait(0.5)
        return self.get_run(run_id)


def _defaults(settings: Any, api: str) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "Job settings must be an object")
    result: dict[str, Any] = copy.deepcopy(settings)
    result.setdefault("name", "Untitled")
    result.setdefault("max_concurrent_runs", 1)
    result.setdefault("timeout_seconds", 0)
    result.setdefault("format", "MULTI_TASK")
    if "queue" not in result and api == "2.2":
        result["queue"] = {"enabled": True}  # jobs created through 2.2 queue by default
    result.setdefault("email_notifications", {})
    return result


def _validate(settings: dict[str, Any]) -> None:
    """The checks ``jobs/create`` makes: the structure of the task graph, not the notebooks."""
    limit = settings.get("max_concurrent_runs", 1)
    if not isinstance(limit, int) or not 0 <= limit <= 1000:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"max_concurrent_runs must be between 0 and 1000, got {limit}")
    for i, task in enumerate(settings.get("tasks") or []):
        path = (task.get("notebook_task") or {}).get("notebook_path", "") if isinstance(task, dict) else ""
        if path and not str(path).startswith("/"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"tasks[{i}].notebook_task.notebook_path ({path}): "
                                                           "a workspace notebook path must be absolute")
    try:
        plan_from_job(settings, Path, "job settings")
    except PlanError as exc:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "; ".join(exc.problems)) from None


def _page(items: list[dict[str, Any]], field: str, limit: int, token: str | None) -> dict[str, Any]:
    start = int(token) if token and token.isdigit() else 0
    page = items[start:start + limit]
    result: dict[str, Any] = {field: page} if page else {}
    more = start + limit < len(items)
    result["has_more"] = more
    if more:
        result["next_page_token"] = str(start + limit)
    if start:
        result["prev_page_token"] = str(max(start - limit, 0))
    return result


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{name} must be a number, got {value!r}") from None
