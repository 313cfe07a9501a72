"""The persistence of the local workspace's jobs and runs: the records, their files and their lock.

Jobs, idempotency tokens and the next id are in ``jobs.json``; each run is in ``runs/<run_id>.json``
of its own (a task event rewrites its run only, not every run the workspace has had). Every file
is written atomically. A run the server stopped under (a crash, a kill) is ended
``INTERNAL_ERROR`` when the records are loaded, its unfinished tasks closed as a finished run's are.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

from ..json_files import write_json

# The life-cycle states of a run that has not ended.
ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING")
INTERRUPTED = "the workspace server (nbflow serve) stopped during the run"


class JobRecords:
    """The jobs and runs in memory, kept in step with their files under ``root``.

    ``lock`` guards every record; ``changed`` (on the same lock) is notified when a run ends, for
    whoever waits on one (a queued run, :meth:`nbflow.serve.jobs_store.JobsStore.wait`).
    """

    def __init__(self, root: Path) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._file = root / "jobs.json"
        self.runs_dir = root / "runs"  # runs/<id>.json, and each run's outputs in runs/<id>/
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, dict[str, Any]] = {}
        self.tokens: dict[str, int] = {}
        self._next_id = 1
        self._load()

    def _load(self) -> None:
        legacy: dict[str, Any] = {}
        if self._file.is_file():
            data = json.loads(self._file.read_text(encoding="utf-8"))
            self.jobs = {int(k): v for k, v in data["jobs"].items()}
            self.tokens = data.get("tokens", {})
            self._next_id = data.get("next_id", 1)
            legacy = data.get("runs") or {}  # written before each run had a file of its own
        self.runs = {int(k): v for k, v in legacy.items()}
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else []:
            run = json.loads(path.read_text(encoding="utf-8"))
            self.runs[int(run["run_id"])] = run
        # Ids are taken from the runs themselves: a run's start need not rewrite jobs.json.
        taken = [r["run_id"] for r in self.runs.values()] + [t["run_id"] for r in self.runs.values()
                                                              for t in r.get("tasks", [])]
        self._next_id = max([self._next_id, *(i + 1 for i in taken)])
        for run_id, run in self.runs.items():
            if run["state"]["life_cycle_state"] in ACTIVE:  # the server stopped under it (crash, kill)
                close_run(run, {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                                "state_message": INTERRUPTED})
                self.save_run(run_id)
            elif str(run_id) in legacy:
                self.save_run(run_id)
        if legacy:
            self.save_jobs()

    def save_jobs(self) -> None:
        """Jobs, idempotency tokens and the next id: small, and written only when they change."""
        _write_json(self._file, {"jobs": self.jobs, "tokens": self.tokens, "next_id": self._next_id})

    def save_run(self, run_id: int) -> None:
        """One run's record (a task event rewrites this file only)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.runs_dir / f"{run_id}.json", self.runs[run_id])

    def new_id(self) -> int:
        """A fresh id for a job, a run or a task run (one sequence, as the API's ids never collide)."""
        with self.lock:
            self._next_id += 1
            return self._next_id - 1

    def finish(self, run_id: int, state: dict[str, Any], end_time: int | None = None) -> None:
        """End a run (see :func:`close_run`), record it, and wake whoever waits on runs ending."""
        with self.changed:
            close_run(self.runs[run_id], state, end_time)
            self.save_run(run_id)
            self.changed.notify_all()


def close_run(run: dict[str, Any], state: dict[str, Any], end_time: int | None = None) -> None:
    """End a run: its state, times and status; a task not yet ended (pending, running) is closed
    CANCELED with the run's message; a task that ended keeps its own state."""
    run["state"] = state
    run["end_time"] = end_time or now_ms()
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
    write_json(path, data, default=str)


def now_ms() -> int:
    """Now, in epoch milliseconds (the API's times)."""
    return int(time.time() * 1000)


def iso_to_ms(iso: str | None) -> int:
    """Epoch milliseconds of an ISO time, 0 if there is none."""
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else 0
