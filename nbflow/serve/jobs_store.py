"""The jobs and runs of the local workspace (Jobs API 2.1/2.2), run by nbflow's own scheduler.

A job's settings are turned into a plan (:func:`nbflow.plan.plan_from_job`) whose notebooks are the
workspace's; a run executes it with :class:`nbflow.scheduler.Scheduler` in a background thread,
every ready task at once, as a Databricks job does. ``runs/get`` shows the run live, in the API's
shape (``run.json`` is already that shape); each task run has its own ``run_id`` for
``runs/get-output``. ``max_concurrent_runs`` skips or queues runs, ``idempotency_token`` returns the
existing run, and an all-purpose cluster named by ``existing_cluster_id`` is started if terminated.
Jobs persist in ``.nbflow/workspace/jobs.json``, each run in ``runs/<run_id>.json`` of its own
(a task event rewrites its run only, not every run the workspace has had), written atomically.
A run the server stopped under (a crash, a kill) is ended ``INTERNAL_ERROR`` at the next start,
its unfinished tasks closed as a finished run's are.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, NbflowError
from ..plan import PlanError, plan_from_job
from .api_errors import ApiError
from .clusters_store import ClustersStore
from .workspace_store import WorkspaceStore

ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING")
# Warm workers the server keeps: enough for a few tasks at once without starving a small machine.
POOL_SIZE = 2 * (os.cpu_count() or 2) + 1
LIST_LIMIT = 25
# How long a stopping server waits for its cancelled runs to end before it closes the pool (which
# kills the workers that did not stop).
STOP_GRACE_S = 5.0
STOPPING = "the workspace server (nbflow serve) is stopping"
INTERRUPTED = "the workspace server (nbflow serve) stopped during the run"


class JobsStore:
    def __init__(self, root: Path, workspace: WorkspaceStore, clusters: ClustersStore, project: Path,
                 engine: str) -> None:
        self.root = root
        self.project, self.engine = project, engine
        self._pool: Any = None
        self.workspace, self.clusters = workspace, clusters
        self._file = root / "jobs.json"
        self._runs_dir = root / "runs"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._schedulers: dict[int, Any] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._stopping = False
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, dict[str, Any]] = {}
        self._tokens: dict[str, int] = {}
        self._next_id = 1
        self._load()

    def _load(self) -> None:
        legacy: dict[str, Any] = {}
        if self._file.is_file():
            data = json.loads(self._file.read_text(encoding="utf-8"))
            self.jobs = {int(k): v for k, v in data["jobs"].items()}
            self._tokens = data.get("tokens", {})
            self._next_id = data.get("next_id", 1)
            legacy = data.get("runs") or {}  # written before each run had a file of its own
        self.runs = {int(k): v for k, v in legacy.items()}
        for path in sorted(self._runs_dir.glob("*.json")) if self._runs_dir.is_dir() else []:
            run = json.loads(path.read_text(encoding="utf-8"))
            self.runs[int(run["run_id"])] = run
        # Ids are taken from the runs themselves: a run's start need not rewrite jobs.json.
        taken = [r["run_id"] for r in self.runs.values()] + [t["run_id"] for r in self.runs.values()
                                                              for t in r.get("tasks", [])]
        self._next_id = max([self._next_id, *(i + 1 for i in taken)])
        for run_id, run in self.runs.items():
            if run["state"]["life_cycle_state"] in ACTIVE:  # the server stopped under it (crash, kill)
                _close(run, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                             "state_message": INTERRUPTED})
                self._save_run(run_id)
            elif str(run_id) in legacy:
                self._save_run(run_id)
        if legacy:
            self._save_jobs()

    def _save_jobs(self) -> None:
        """Jobs, idempotency tokens and the next id: small, and written only when they change."""
        _write_json(self._file, {"jobs": self.jobs, "tokens": self._tokens, "next_id": self._next_id})

    def _save_run(self, run_id: int) -> None:
        """One run's record (a task event rewrites this file only)."""
        self._runs_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self._runs_dir / f"{run_id}.json", self.runs[run_id])

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    # -- jobs -----------------------------------------------------------------------------------
    def create(self, settings: dict[str, Any], api: str) -> int:
        settings = _defaults(settings, api)
        _validate(settings)
        with self._lock:
            job_id = self._new_id()
            self.jobs[job_id] = {"job_id": job_id, "created_time": _now(), "creator_user_name": "nbflow",
                                 "run_as_user_name": "nbflow", "settings": settings}
            self._save_jobs()
        return job_id

    def get(self, job_id: Any) -> dict[str, Any]:
        with self._lock:
            job = self.jobs.get(_int(job_id, "job_id"))
            if job is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
            return copy.deepcopy(job)

    def list_jobs(self, name: str | None, limit: int, page_token: str | None) -> dict[str, Any]:
        with self._lock:
            jobs = [copy.deepcopy(j) for j in sorted(self.jobs.values(), key=lambda j: j["job_id"])
                    if name is None or j["settings"].get("name", "").lower() == name.lower()]
        return _page(jobs, "jobs", limit, page_token)

    def reset(self, job_id: Any, settings: dict[str, Any]) -> None:
        job = self.get(job_id)
        settings = _defaults(settings, "2.2" if job["settings"].get("queue", {}).get("enabled") else "2.1")
        _validate(settings)
        with self._lock:
            self.jobs[job["job_id"]]["settings"] = settings
            self._save_jobs()

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
        with self._lock:
            self.jobs[job["job_id"]]["settings"] = settings
            self._save_jobs()

    def delete(self, job_id: Any) -> None:
        job = self.get(job_id)
        with self._lock:
            del self.jobs[job["job_id"]]
            self._save_jobs()

    def scheduled(self) -> list[tuple[int, dict[str, Any]]]:
        """The jobs with a schedule, for :class:`nbflow.serve.schedules.ScheduleRunner`."""
        with self._lock:
            return [(job_id, dict(job["settings"]["schedule"])) for job_id, job in self.jobs.items()
                    if isinstance(job["settings"].get("schedule"), dict)]

    def fire_schedule(self, job_id: int) -> None:
        with contextlib.suppress(ApiError):  # deleted since the schedule was read: nothing to run
            self.run_now({"job_id": job_id}, trigger="PERIODIC")

    # -- runs -----------------------------------------------------------------------------------
    def run_now(self, body: dict[str, Any], trigger: str = "ONE_TIME") -> dict[str, Any]:
        job = self.get(body.get("job_id"))
        token = body.get("idempotency_token")
        with self._lock:
            if token and token in self._tokens:
                return {"run_id": self._tokens[token], "number_in_job": self._tokens[token]}
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
        if token:
            with self._lock:
                self._tokens[token] = run_id
                self._save_jobs()
        return {"run_id": run_id, "number_in_job": run_id}

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("idempotency_token")
        with self._lock:
            if token and token in self._tokens:
                return {"run_id": self._tokens[token]}
        settings = {"name": body.get("run_name") or "Untitled", "tasks": body.get("tasks") or [],
                    "timeout_seconds": body.get("timeout_seconds") or 0, "max_concurrent_runs": 1000}
        _validate(settings)
        run_id = self._start(settings, None, "SUBMIT_RUN", "ONE_TIME", {}, {})
        if token:
            with self._lock:
                self._tokens[token] = run_id
                self._save_jobs()
        return {"run_id": run_id}

    def _start(self, settings: dict[str, Any], job_id: int | None, run_type: str, trigger: str,
               job_parameters: dict[str, str], overriding: dict[str, Any]) -> int:
        with self._lock:
            run_id = self._new_id()
            tasks = [{"task_key": t["task_key"], "run_id": self._new_id(), "state": {"life_cycle_state": "PENDING"},
                      "depends_on": t.get("depends_on", []), "run_if": t.get("run_if", "ALL_SUCCESS"),
                      "notebook_task": t.get("notebook_task"), "existing_cluster_id": t.get("existing_cluster_id"),
                      "start_time": 0, "end_time": 0, "attempt_number": 0} for t in settings.get("tasks", [])]
            params = {p["name"]: str(p.get("default", "")) for p in settings.get("parameters", [])}
            params.update(job_parameters)
            run: dict[str, Any] = {
                "run_id": run_id, "job_id": job_id, "number_in_job": run_id, "original_attempt_run_id": run_id,
                "run_name": settings.get("name", "Untitled"), "run_type": run_type, "trigger": trigger,
                "creator_user_name": "nbflow", "format": "MULTI_TASK", "start_time": _now(), "end_time": 0,
                "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0, "run_duration": 0,
                "state": {"life_cycle_state": "PENDING", "state_message": ""},
                "job_parameters": [{"name": k, "default": str(p.get("default", "")), "value": params[k]}
                                   for p in settings.get("parameters", []) for k in [p["name"]]],
                "overriding_parameters": overriding, "tasks": tasks,
                "run_page_url": f"#job/{job_id}/run/{run_id}",
            }
            limit = settings.get("max_concurrent_runs", 1)
            active = [r for r in self.runs.values() if r["job_id"] == job_id and job_id is not None
                      and r["state"]["life_cycle_state"] in ACTIVE]
            self.runs[run_id] = run
            if len(active) >= limit and (limit == 0 or not settings.get("queue", {}).get("enabled")):
                run["state"] = {"life_cycle_state": "SKIPPED", "state_message":
                                f"Skipping this run because the limit of {limit} maximum concurrent runs has "
                                f"been reached."}
                run["end_time"] = run["start_time"]
                for task in tasks:
                    task["state"] = {"life_cycle_state": "SKIPPED"}
                self._save_run(run_id)
                return run_id
            if len(active) >= limit:
                run["state"] = {"life_cycle_state": "QUEUED", "state_message": "Queued: maximum concurrent runs"}
            self._save_run(run_id)
            thread = threading.Thread(target=self._execute, args=(run_id, copy.deepcopy(settings), params, limit),
                                      name=f"job-run-{run_id}", daemon=True)
            self._threads[run_id] = thread
        thread.start()
        return run_id

    def _execute(self, run_id: int, settings: dict[str, Any], params: dict[str, str], limit: int) -> None:
        try:
            self._run(run_id, settings, params, limit)
        finally:
            with self._lock:
                self._threads.pop(run_id, None)

    def _run(self, run_id: int, settings: dict[str, Any], params: dict[str, str], limit: int) -> None:
        from ..report import runs_get
        from ..scheduler import CANCELED_STATES, Scheduler, job_result

        run = self.runs[run_id]
        with self._changed:  # a queued run waits for a slot
            while run["state"]["life_cycle_state"] == "QUEUED" and not self._stopping:
                ahead = [r for r in self.runs.values() if r["job_id"] == run["job_id"] and r["run_id"] < run_id
                         and r["state"]["life_cycle_state"] in ACTIVE]
                if len(ahead) < limit:
                    run["state"] = {"life_cycle_state": "PENDING", "state_message": ""}
                    break
                self._changed.wait(1.0)
            if not self._still_to_run(run_id):
                return
        try:
            for cluster_id in {t["existing_cluster_id"] for t in run["tasks"] if t.get("existing_cluster_id")}:
                self.clusters.ensure_running(cluster_id)
            plan, notebooks = plan_from_job(settings, self._locate, f"job run {run_id}")
        except (ApiError, PlanError, NbflowError) as exc:
            self._finish(run_id, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                  "state_message": str(getattr(exc, "message", exc))})
            return
        with self._lock:  # one step, so that a cancel or a stop finds either no scheduler or this one
            if not self._still_to_run(run_id):
                return
            scheduler = Scheduler(plan, notebooks, self.root / "runs" / str(run_id), str(run_id), mode="parallel",
                                  job_parameters=params, on_event=lambda event, task: self._progress(run_id),
                                  pool=self._warm_pool())
            ids = {t["task_key"]: t["run_id"] for t in run["tasks"]}
            for key, task_run in scheduler.run.tasks.items():
                task_run.run_id = ids[key]
            self._schedulers[run_id] = scheduler
            run["state"] = {"life_cycle_state": "RUNNING", "state_message": ""}
            self._save_run(run_id)
        try:
            plan_run = scheduler.execute()
            shaped = runs_get(plan_run)
        except Exception as exc:  # a defect ends the run visibly, never leaves it RUNNING
            self._finish(run_id, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                  "state_message": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            with self._lock:
                self._schedulers.pop(run_id, None)
        with self._lock:
            self._merge(run, shaped)
            for task_run in plan_run.tasks.values():
                for attempt in task_run.attempts:
                    if attempt.result is not None:
                        for child_id in self._workflow_runs(attempt.result.children, task_run.run_id, run):
                            self._save_run(child_id)
            state = dict(shaped["state"])
            if state["result_state"] == "CANCELED":
                if not any(t.status in CANCELED_STATES for t in plan_run.tasks.values()):
                    # The cancel came after every task had ended: the run is what its tasks say.
                    state["result_state"] = job_result(plan_run.tasks, scheduler.deps)
                else:
                    state["state_message"] = state["state_message"] or (
                        STOPPING if self._stopping else "the run was cancelled")
            state["user_cancelled_or_timedout"] = state["result_state"] in ("CANCELED", "TIMEDOUT")
            self._finish(run_id, state, end_time=shaped["end_time"])

    def _still_to_run(self, run_id: int) -> bool:
        """Whether a run not yet given to the scheduler goes on: not if it was cancelled meanwhile,
        nor once the server is stopping (it ends CANCELED; nothing of it ran). Under the lock."""
        if self._stopping and self.runs[run_id]["state"]["life_cycle_state"] in ACTIVE:
            self._finish(run_id, {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                                  "state_message": STOPPING, "user_cancelled_or_timedout": True})
        return self.runs[run_id]["state"]["life_cycle_state"] in ACTIVE

    def _workflow_runs(self, children: list[dict[str, Any]], parent: int, run: dict[str, Any]) -> list[int]:
        """Each ``dbutils.notebook.run`` child of a task as a WORKFLOW_RUN, as a workspace lists them;
        the ids of the runs made."""
        from ..results import read_result

        made: list[int] = []
        for child in children:
            try:
                result = read_result(child["output"])
            except (NbflowError, OSError, ValueError):
                continue
            child_id = self._new_id()
            start = _ms(result.start_time) or run["start_time"]
            self.runs[child_id] = {
                "run_id": child_id, "job_id": run["job_id"], "parent_run_id": parent, "run_type": "WORKFLOW_RUN",
                "run_name": Path(result.notebook).stem, "number_in_job": child_id, "creator_user_name": "nbflow",
                "start_time": start, "end_time": _ms(result.end_time) or start,
                "run_duration": (_ms(result.end_time) or start) - start,
                "state": {"life_cycle_state": "TERMINATED", "result_state": result.status,
                          "state_message": "" if result.error is None else result.error.evalue},
                "notebook_task": {"notebook_path": result.notebook,
                                  "base_parameters": {k: v.get("value") for k, v in result.parameters.items()}},
                "notebook_output": {"result": result.exit_value, "truncated": result.exit_truncated}
                if result.exit_value is not None else {},
                "attempts": [] if result.error is None else [{"error": result.error.summary()}],
            }
            made.append(child_id)
            made += self._workflow_runs(result.children, child_id, run)
        return made

    def _warm_pool(self) -> Any:
        """The server's worker pool, shared by every run and kept warm between them (Spark attached),
        so a run pays for its cells, not for starting kernels: as an all-purpose cluster is up."""
        from ..pool import WorkerPool

        with self._lock:
            if self._pool is None:
                self._pool = WorkerPool(POOL_SIZE, {
                    "project": str(self.project), "engine": self.engine, "spark": True})
            return self._pool

    def _locate(self, path: str) -> Path:
        """A task's notebook: the workspace's file, or a path that does not exist (the task fails)."""
        try:
            return self.workspace.local_file(path)
        except ApiError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return self.root / "missing" / path.lstrip("/")
            raise InputError(exc.message) from None

    def _progress(self, run_id: int) -> None:
        from ..report import runs_get

        with self._lock:
            scheduler = self._schedulers.get(run_id)
            if scheduler is None:
                return
            self._merge(self.runs[run_id], runs_get(scheduler.run))
            for task in self.runs[run_id]["tasks"]:
                status = scheduler.run.tasks[task["task_key"]].status
                if status in ("PENDING", "RUNNING"):
                    task["state"] = {"life_cycle_state": status}
                if status == "RUNNING" and not task.get("start_time"):  # live, as runs/get shows it
                    task["start_time"] = _now()
            self._save_run(run_id)

    @staticmethod
    def _merge(run: dict[str, Any], shaped: dict[str, Any]) -> None:
        """Take the tasks' states, timings, attempts and outputs from the scheduler's run."""
        by_key = {t["task_key"]: t for t in shaped["tasks"]}
        for task in run["tasks"]:
            done = by_key.get(task["task_key"])
            if done is not None:
                update = {k: v for k, v in done.items() if k not in ("run_id", "depends_on", "notebook_task")}
                if not update.get("start_time"):  # no attempt ended yet: keep when it was seen starting
                    update.pop("start_time", None)
                task.update(update)
                task["output_dir"] = shaped["nbflow"]["output_dir"]
        for key in ("setup_duration", "execution_duration", "cleanup_duration"):
            run[key] = shaped.get(key, 0)

    def _finish(self, run_id: int, state: dict[str, Any], end_time: int | None = None) -> None:
        with self._changed:
            _close(self.runs[run_id], state, end_time)
            self._save_run(run_id)
            self._changed.notify_all()

    def get_run(self, run_id: Any) -> dict[str, Any]:
        """A job run, or a task run (by its own run id) in the same shape."""
        wanted = _int(run_id, "run_id")
        with self._lock:
            if wanted in self.runs:
                return copy.deepcopy(self.runs[wanted])
            for run in self.runs.values():
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
        with self._lock:
            runs = [copy.deepcopy(r) for r in sorted(self.runs.values(), key=lambda r: -r["run_id"])
                    if (job_id is None or r["job_id"] == job_id)
                    and (not active_only or r["state"]["life_cycle_state"] in ACTIVE)
                    and (not completed_only or r["state"]["life_cycle_state"] not in ACTIVE)
                    and (not query.get("run_type") or r["run_type"] == query["run_type"])]
        if query.get("expand_tasks") != "true":
            for r in runs:
                r.pop("tasks", None)
        return _page(runs, "runs", int(query.get("limit") or 20) or LIST_LIMIT, query.get("page_token"))

    def cancel(self, run_id: Any) -> None:
        run = self.get_run(run_id)
        with self._lock:
            scheduler = self._schedulers.get(run["run_id"])
            if scheduler is not None:
                scheduler.cancel("the run was cancelled (runs/cancel)")
            elif run["state"]["life_cycle_state"] in ("QUEUED", "PENDING"):
                self._finish(run["run_id"], {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                                             "state_message": "cancelled before it started",
                                             "user_cancelled_or_timedout": True})

    def cancel_all(self, job_id: Any) -> None:
        with self._lock:
            ids = [r["run_id"] for r in self.runs.values() if r["job_id"] == _int(job_id, "job_id")
                   and r["state"]["life_cycle_state"] in ACTIVE]
        for run_id in ids:
            self.cancel(run_id)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Cancel every active run (the server is stopping) and record how each ended; nothing is
        left running: workers that do not stop within ``grace`` are stopped with the pool."""
        with self._changed:
            self._stopping = True  # queued runs, and runs not yet on a worker, end CANCELED
            schedulers = list(self._schedulers.values())
            self._changed.notify_all()
        for scheduler in schedulers:
            scheduler.cancel(STOPPING)
        deadline = time.monotonic() + grace
        for thread in self._live_threads():
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()  # a task whose worker is killed here ends, and its run with it
        for thread in self._live_threads():
            thread.join(5.0)

    def _live_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads.values())

    def wait(self, run_id: int, timeout: float) -> dict[str, Any]:
        """Block until a run is no longer active (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.runs[run_id]["state"]["life_cycle_state"] in ACTIVE and time.monotonic() < deadline:
                self._changed.wait(0.5)
        return self.get_run(run_id)


def _close(run: dict[str, Any], state: dict[str, Any], end_time: int | None = None) -> None:
    """End a run: its state, times and status; a task not yet ended (pending, running) is closed
    CANCELED with the run's message; a task that ended keeps its own state."""
    run["state"] = state
    run["end_time"] = end_time or _now()
    run["run_duration"] = run["end_time"] - run["start_time"]
    code = state.get("result_state") or state["life_cycle_state"]
    run["status"] = {"state": "TERMINATED", "termination_details": {
        "code": code, "type": "SUCCESS" if code in ("SUCCESS", "SUCCESS_WITH_FAILURES") else "CLIENT_ERROR",
        "message": state.get("state_message", "")}}
    for task in run.get("tasks", []):
        if task["state"].get("life_cycle_state") in ACTIVE:
            task["state"] = {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                             "state_message": state.get("state_message", "")}
            if task.get("start_time"):
                task["end_time"] = task.get("end_time") or run["end_time"]


def _write_json(path: Path, data: Any) -> None:
    """Write a file whole or not at all: a reader, or a crash, never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)


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


def _now() -> int:
    return int(time.time() * 1000)


def _ms(iso: str | None) -> int:
    """Epoch milliseconds of an ISO time, 0 if there is none."""
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else 0

