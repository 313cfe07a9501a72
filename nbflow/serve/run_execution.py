"""Execution of the local workspace's runs: each run on nbflow's scheduler, in a thread of its own.

A run's job settings are turned into a plan (:func:`nbflow.plan.plan_from_job`) whose notebooks are
the workspace's, and executed by :class:`nbflow.scheduler.Scheduler` on the server's warm worker
pool, every ready task at once, as a Databricks job does. An all-purpose cluster a task names by
``existing_cluster_id`` is started first if terminated. ``runs/get`` shows the run live: every task
event merges the scheduler's run (``run.json`` is already the API's shape) into the run's record.
Each ``dbutils.notebook.run`` child of a task is recorded as a WORKFLOW_RUN. This is the one module
of the server that uses the scheduler.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..cluster import server as cluster_server
from ..cluster.state import ClusterState
from ..errors import InputError, NbflowError
from ..executor import Executor
from ..plan import PlanError, plan_from_job
from ..pool import WorkerPool
from ..pool_client import ServiceExecutor, service_available
from ..report import runs_get
from ..results import read_result
from ..scheduler import Scheduler
from .api_errors import ApiError
from .clusters_store import ClustersStore
from .jobs_records import JobRecords, iso_to_ms, now_ms
from .run_queue import STOPPING, RunQueue
from .workspace_store import WorkspaceStore

# Warm workers the server keeps: enough for a few tasks at once without starving a small machine.
POOL_SIZE = 2 * (os.cpu_count() or 2) + 1


class RunExecutor:
    def __init__(self, root: Path, records: JobRecords, queue: RunQueue, workspace: WorkspaceStore,
                 clusters: ClustersStore, project: Path, cluster_engine: str) -> None:
        self.root, self.records, self.queue = root, records, queue
        self.workspace, self.clusters = workspace, clusters
        self.project, self.cluster_engine = project, cluster_engine
        self._pool: Executor | None = None
        self._started_cluster: ClusterState | None = None  # the local cluster this server started, if any
        self._threads: dict[int, threading.Thread] = {}
        self._schedulers: dict[int, Scheduler] = {}  # the runs on their scheduler, for their progress

    def launch(self, run_id: int, settings: dict[str, Any], params: dict[str, str], limit: int) -> None:
        """Run a recorded, admitted run in a thread of its own. Under the lock."""
        thread = threading.Thread(target=self._execute, args=(run_id, copy.deepcopy(settings), params, limit),
                                  name=f"job-run-{run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()  # it waits for the lock the caller holds

    def close(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the runs' threads (cancelled by the queue), then close the
        pool: a task whose worker is killed there ends, and its run with it."""
        deadline = time.monotonic() + grace
        for thread in self._live_threads():
            thread.join(max(deadline - time.monotonic(), 0))
        with self.records.lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        for thread in self._live_threads():
            thread.join(5.0)
        started, self._started_cluster = self._started_cluster, None
        current = cluster_server.running(self.project)
        if started is not None and current is not None and current.identity == started.identity:
            cluster_server.stop(self.project)

    def _live_threads(self) -> list[threading.Thread]:
        with self.records.lock:
            return list(self._threads.values())

    def _execute(self, run_id: int, settings: dict[str, Any], params: dict[str, str], limit: int) -> None:
        try:
            self._run(run_id, settings, params, limit)
        finally:
            with self.records.lock:
                self._threads.pop(run_id, None)

    def _run(self, run_id: int, settings: dict[str, Any], params: dict[str, str], limit: int) -> None:
        records = self.records
        run = records.runs[run_id]
        if not self.queue.wait_for_slot(run_id, limit):
            return
        try:
            for cluster_id in {t["existing_cluster_id"] for t in run["tasks"] if t.get("existing_cluster_id")}:
                self.clusters.ensure_running(cluster_id)
            plan, notebooks = plan_from_job(settings, self._locate, f"job run {run_id}")
        except (ApiError, PlanError, NbflowError) as exc:
            records.finish(run_id, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                    "state_message": str(getattr(exc, "message", exc))})
            return
        with records.lock:  # one step, so that a cancel or a stop finds either no scheduler or this one
            if not self.queue.still_to_run(run_id):
                return
            scheduler = Scheduler(plan, notebooks, records.runs_dir / str(run_id), str(run_id), mode="parallel",
                                  job_parameters=params, on_event=lambda event, task: self._progress(run_id),
                                  executor=self._warm_pool())
            ids = {t["task_key"]: t["run_id"] for t in run["tasks"]}
            for key, task_run in scheduler.run.tasks.items():
                task_run.run_id = ids[key]
            self.queue.running(run_id, scheduler)
            self._schedulers[run_id] = scheduler
            run["state"] = {"life_cycle_state": "RUNNING", "state_message": ""}
            records.save_run(run_id)
        try:
            plan_run = scheduler.execute()
            shaped = runs_get(plan_run)
        except Exception as exc:  # a defect ends the run visibly, never leaves it RUNNING
            records.finish(run_id, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                    "state_message": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            with records.lock:
                self.queue.ended(run_id)
                self._schedulers.pop(run_id, None)
        with records.lock:
            _merge(run, shaped)
            for task_run in plan_run.tasks.values():
                for attempt in task_run.attempts:
                    if attempt.result is not None:
                        for child_id in self._workflow_runs(attempt.result.children, task_run.run_id, run):
                            records.save_run(child_id)
            state = dict(shaped["state"])
            if state["result_state"] == "CANCELED":  # (a cancel after every task ended is not one)
                state["state_message"] = state["state_message"] or (
                    STOPPING if self.queue.stopping else "the run was cancelled")
            state["user_cancelled_or_timedout"] = state["result_state"] in ("CANCELED", "TIMEDOUT")
            records.finish(run_id, state, end_time=shaped["end_time"])

    def _workflow_runs(self, children: list[dict[str, Any]], parent: int, run: dict[str, Any]) -> list[int]:
        """Each ``dbutils.notebook.run`` child of a task as a WORKFLOW_RUN, as a workspace lists them;
        the ids of the runs made."""
        made: list[int] = []
        for child in children:
            try:
                result = read_result(child["output"])
            except (NbflowError, OSError, ValueError):
                continue
            child_id = self.records.new_id()
            start = iso_to_ms(result.start_time) or run["start_time"]
            self.records.runs[child_id] = {
                "run_id": child_id, "job_id": run["job_id"], "parent_run_id": parent, "run_type": "WORKFLOW_RUN",
                "run_name": Path(result.notebook).stem, "number_in_job": child_id, "creator_user_name": "nbflow",
                "start_time": start, "end_time": iso_to_ms(result.end_time) or start,
                "run_duration": (iso_to_ms(result.end_time) or start) - start,
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

    def _warm_pool(self) -> Executor:
        """What runs the server's tasks, shared by every run and kept warm between them (Spark
        attached), so a run pays for its cells, not for starting kernels, as on an all-purpose
        cluster: the warm kernels of the project's cluster (its pool service), else a worker pool
        of this server's."""
        with self.records.lock:
            if self._pool is None:
                def own_pool() -> WorkerPool:
                    return WorkerPool(POOL_SIZE, {
                        "project": str(self.project), "engine": self.cluster_engine, "spark": True})

                # The cluster's warm kernels when it runs; this server does not start one for them.
                was_running = cluster_server.running(self.project)
                if service_available(self.project, self.cluster_engine, spark=False):
                    self._pool = ServiceExecutor(self.project, POOL_SIZE, own_pool)
                    if was_running is None:  # this server started the cluster: it stops it (close())
                        self._started_cluster = cluster_server.running(self.project)
                else:
                    self._pool = own_pool()
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
        with self.records.lock:
            scheduler = self._schedulers.get(run_id)
            if scheduler is None:
                return
            _merge(self.records.runs[run_id], runs_get(scheduler.run))
            for task in self.records.runs[run_id]["tasks"]:
                status = scheduler.run.tasks[task["task_key"]].status
                if status in ("PENDING", "RUNNING"):
                    task["state"] = {"life_cycle_state": status}
                if status == "RUNNING" and not task.get("start_time"):  # live, as runs/get shows it
                    task["start_time"] = now_ms()
            self.records.save_run(run_id)


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
