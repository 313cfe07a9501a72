"""Queueing of the local workspace's runs: ``max_concurrent_runs``, the queue, cancellation, stopping.

A new run of a job that has ``max_concurrent_runs`` active runs already is skipped, or queued when
the job's queue is enabled (Jobs API 2.2 jobs queue by default); a queued run waits for a slot in
the order the runs were made. A run is cancelled through its scheduler once it has one, and ended
CANCELED at once before that. Once the server is stopping, no run starts: queued runs, and runs
not yet on a worker, end CANCELED.
"""

from __future__ import annotations

from typing import Any, Protocol

from .jobs_records import ACTIVE, JobRecords

STOPPING = "the workspace server (nbflow serve) is stopping"


class Cancellable(Protocol):
    """What a running run is cancelled through (its scheduler)."""

    def cancel(self, reason: str, /) -> None: ...


class RunQueue:
    def __init__(self, records: JobRecords) -> None:
        self.records = records
        self.stopping = False
        self._running: dict[int, Cancellable] = {}

    def admit(self, run: dict[str, Any], settings: dict[str, Any]) -> bool:
        """Whether a new run (recorded already, PENDING) goes on: False when it is skipped for the
        job's ``max_concurrent_runs`` (the run is SKIPPED then); QUEUED when it must wait. Under the
        lock, the run not saved yet."""
        job_id, run_id = run["job_id"], run["run_id"]
        limit = settings.get("max_concurrent_runs", 1)
        active = [r for r in self.records.runs.values() if job_id is not None and r["job_id"] == job_id
                  and r["run_id"] != run_id and r["state"]["life_cycle_state"] in ACTIVE]
        if len(active) >= limit and (limit == 0 or not settings.get("queue", {}).get("enabled")):
            run["state"] = {"life_cycle_state": "SKIPPED", "state_message":
                            f"Skipping this run because the limit of {limit} maximum concurrent runs has "
                            f"been reached."}
            run["end_time"] = run["start_time"]
            for task in run["tasks"]:
                task["state"] = {"life_cycle_state": "SKIPPED"}
            return False
        if len(active) >= limit:
            run["state"] = {"life_cycle_state": "QUEUED", "state_message": "Queued: maximum concurrent runs"}
        return True

    def wait_for_slot(self, run_id: int, limit: int) -> bool:
        """Block a queued run until fewer than ``limit`` earlier runs of its job are active; whether
        it goes on (not if it was cancelled meanwhile, nor once the server is stopping)."""
        records = self.records
        run = records.runs[run_id]
        with records.changed:
            while run["state"]["life_cycle_state"] == "QUEUED" and not self.stopping:
                ahead = [r for r in records.runs.values() if r["job_id"] == run["job_id"] and r["run_id"] < run_id
                         and r["state"]["life_cycle_state"] in ACTIVE]
                if len(ahead) < limit:
                    run["state"] = {"life_cycle_state": "PENDING", "state_message": ""}
                    break
                records.changed.wait(1.0)
            return self.still_to_run(run_id)

    def still_to_run(self, run_id: int) -> bool:
        """Whether a run not yet given to the scheduler goes on: not if it was cancelled meanwhile,
        nor once the server is stopping (it ends CANCELED; nothing of it ran). Under the lock."""
        runs = self.records.runs
        if self.stopping and runs[run_id]["state"]["life_cycle_state"] in ACTIVE:
            self.records.finish(run_id, {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                                         "state_message": STOPPING, "user_cancelled_or_timedout": True})
        return runs[run_id]["state"]["life_cycle_state"] in ACTIVE

    def running(self, run_id: int, handle: Cancellable) -> None:
        """The run is on its scheduler now: a cancel goes through ``handle``. Under the lock, in
        one step with :meth:`still_to_run`, so a cancel finds either no scheduler or this one."""
        self._running[run_id] = handle

    def ended(self, run_id: int) -> None:
        with self.records.lock:
            self._running.pop(run_id, None)

    def cancel(self, run: dict[str, Any]) -> None:
        """Cancel a run: through its scheduler if it has one, else at once if it has not started."""
        with self.records.lock:
            handle = self._running.get(run["run_id"])
            if handle is not None:
                handle.cancel("the run was cancelled (runs/cancel)")
            elif run["state"]["life_cycle_state"] in ("QUEUED", "PENDING"):
                self.records.finish(run["run_id"], {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                                                    "state_message": "cancelled before it started",
                                                    "user_cancelled_or_timedout": True})

    def stop(self) -> None:
        """The server is stopping: no run starts any more, and every running run is cancelled."""
        with self.records.changed:
            self.stopping = True  # queued runs, and runs not yet on a worker, end CANCELED
            handles = list(self._running.values())
            self.records.changed.notify_all()
        for handle in handles:
            handle.cancel(STOPPING)
