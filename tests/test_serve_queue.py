"""The local workspace's run queue on its own (no server, no scheduler): ``max_concurrent_runs``
skips or queues, a queued run waits for a slot in order, a cancel or a stopping server ends it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nbflow.serve.jobs_records import JobRecords, now_ms
from nbflow.serve.run_queue import STOPPING, RunQueue


def new_run(records: JobRecords, job_id: int) -> dict[str, Any]:
    run_id = records.new_id()
    run = {"run_id": run_id, "job_id": job_id, "start_time": now_ms(), "end_time": 0,
           "state": {"life_cycle_state": "PENDING", "state_message": ""},
           "tasks": [{"task_key": "t", "run_id": records.new_id(), "state": {"life_cycle_state": "PENDING"}}]}
    records.runs[run_id] = run
    return run


def admitted(run_queue: RunQueue, run: dict[str, Any], **settings: Any) -> bool:
    with run_queue.records.lock:
        return run_queue.admit(run, {"max_concurrent_runs": 1, **settings})


def waiter(queue: RunQueue, run_id: int) -> tuple[threading.Thread, list[bool]]:
    went_on: list[bool] = []
    thread = threading.Thread(target=lambda: went_on.append(queue.wait_for_slot(run_id, 1)), daemon=True)
    thread.start()
    return thread, went_on


def test_a_run_over_the_limit_is_skipped_without_a_queue_and_queued_with_one(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    queue = RunQueue(records)
    first = new_run(records, 1)
    assert admitted(queue, first) and first["state"]["life_cycle_state"] == "PENDING"
    second = new_run(records, 1)
    assert not admitted(queue, second)
    assert second["state"]["life_cycle_state"] == "SKIPPED" and second["end_time"] == second["start_time"]
    assert second["tasks"][0]["state"] == {"life_cycle_state": "SKIPPED"}
    third = new_run(records, 1)
    assert admitted(queue, third, queue={"enabled": True})
    assert third["state"]["life_cycle_state"] == "QUEUED"
    other_job = new_run(records, 2)
    assert admitted(queue, other_job) and other_job["state"]["life_cycle_state"] == "PENDING"


def test_a_queued_run_goes_on_once_the_run_ahead_ends(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    queue = RunQueue(records)
    first = new_run(records, 1)
    admitted(queue, first)
    second = new_run(records, 1)
    admitted(queue, second, queue={"enabled": True})
    thread, went_on = waiter(queue, second["run_id"])
    thread.join(0.3)
    assert thread.is_alive() and second["state"]["life_cycle_state"] == "QUEUED"
    records.finish(first["run_id"], {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"})
    thread.join(10)
    assert went_on == [True] and second["state"]["life_cycle_state"] == "PENDING"


def test_a_queued_run_cancelled_ends_at_once_and_never_goes_on(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    queue = RunQueue(records)
    first = new_run(records, 1)
    admitted(queue, first)
    second = new_run(records, 1)
    admitted(queue, second, queue={"enabled": True})
    thread, went_on = waiter(queue, second["run_id"])
    queue.cancel(second)
    thread.join(10)
    assert went_on == [False]
    assert second["state"]["result_state"] == "CANCELED"
    assert second["state"]["state_message"] == "cancelled before it started"
    assert (tmp_path / "runs" / f"{second['run_id']}.json").is_file()  # recorded as it ended


def test_a_stopping_server_ends_its_queued_runs_canceled(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    queue = RunQueue(records)
    first = new_run(records, 1)
    admitted(queue, first)
    second = new_run(records, 1)
    admitted(queue, second, queue={"enabled": True})
    thread, went_on = waiter(queue, second["run_id"])
    queue.stop()
    thread.join(10)
    assert went_on == [False]
    assert second["state"]["result_state"] == "CANCELED" and second["state"]["state_message"] == STOPPING
    assert not queue.still_to_run(first["run_id"])  # a run not yet on a worker does not start either
    assert first["state"]["state_message"] == STOPPING


def test_a_run_the_server_stopped_under_is_ended_when_the_records_are_loaded(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    run = new_run(records, 1)
    run["state"] = {"life_cycle_state": "RUNNING"}
    records.save_run(run["run_id"])
    again = JobRecords(tmp_path).runs[run["run_id"]]
    assert again["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    assert again["tasks"][0]["state"]["result_state"] == "CANCELED"
