"""What a plan run tells the user: the ``--json`` summary, ``run.json`` in the shape of the Jobs
API's ``runs/get``, and one console line per event."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from .errors import InputError
from .plan import Plan
from .results import read_result
from .runs import RUNNING, SUCCEEDED, Attempt, CellError, PlanRun, TaskRun, TaskState, task_state


def task_summary(task_run: TaskRun) -> dict[str, Any]:
    """The entry of a task in the ``--json`` summary: its last attempt, as a notebook run's."""
    last = task_run.last
    result = last.result if last else None
    error = last.error if last else None
    return {
        "task_key": task_run.task.task_key,
        "notebook": task_run.task.notebook,
        "status": task_run.status.value,
        "exit_value": result.exit_value if result else None,
        "output": last.output if last else None,
        "duration_s": round((last.end_ms - last.start_ms) / 1000, 3) if last else None,
        "error": None if error is None else error.summary(),
        "attempts": len(task_run.attempts),
        "reason": task_run.reason or None,
    }


def summary(run: PlanRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": str(run.result_state),
        "output_dir": str(run.output_dir),
        "mode": run.mode,
        "duration_s": round((run.end_ms - run.start_ms) / 1000, 3),
        "tasks": [task_summary(t) for t in run.tasks.values()],
    }


def runs_get(run: PlanRun) -> dict[str, Any]:
    """``run.json``: the run as the Jobs API's ``runs/get`` returns a multi-task run."""
    tasks = [_task_run_json(task_run, run) for task_run in run.tasks.values()]
    starts = [a.start_ms for t in run.tasks.values() for a in t.attempts if a.start_ms]
    setup = max(min(starts) - run.start_ms, 0) if starts and run.start_ms else 0
    return {
        "run_id": run.run_id,
        "run_name": run.plan.name,
        "run_type": "JOB_RUN",
        "format": "MULTI_TASK",
        "state": _state(run.result_state, ""),
        "start_time": run.start_ms,
        "end_time": run.end_ms,
        # Setup: until the first task had a warm kernel (the worker pool starting, as a cluster does).
        "setup_duration": setup,
        "execution_duration": run.end_ms - run.start_ms - setup - run.cleanup_ms,
        "cleanup_duration": run.cleanup_ms,
        "run_duration": run.end_ms - run.start_ms,
        "job_parameters": [{"name": k, "value": v} for k, v in run.job_parameters.items()],
        "tasks": tasks,
        "nbflow": {"mode": run.mode, "output_dir": str(run.output_dir), "resume_from": run.resume_from},
    }


def _task_run_json(task_run: TaskRun, run: PlanRun) -> dict[str, Any]:
    last = task_run.last
    entry: dict[str, Any] = {
        "task_key": task_run.task.task_key,
        "run_id": task_run.run_id,
        "depends_on": [{"task_key": d} for d in task_run.task.depends_on if d in run.tasks],
        "run_if": task_run.task.run_if,
        "notebook_task": {"notebook_path": task_run.task.notebook, "base_parameters": dict(task_run.task.parameters)},
        "setup_duration": last.setup_ms if last else 0,  # waiting for a worker with a warm kernel
        "cleanup_duration": 0,
        "attempts": [{"attempt_number": a.number, "result_state": a.status.value, "start_time": a.start_ms,
                      "end_time": a.end_ms, "setup_duration": a.setup_ms, "output": a.output,
                      "error": None if a.error is None else a.error.summary()}
                     for a in task_run.attempts],
    }
    if last is None:  # never ran: skipped by run_if, disabled, or cancelled before it started
        return {**entry, "attempt_number": 0, "state": _state(task_run.status, task_run.reason),
                "start_time": 0, "end_time": 0, "execution_duration": 0, "run_duration": 0,
                "notebook_output": {}, "task_values": {}}
    result = last.result
    message = task_run.reason or (last.error.evalue if last.error else "")
    return {
        **entry,
        "attempt_number": last.number,
        "state": _state(task_run.status, message),
        "start_time": last.start_ms,
        "end_time": last.end_ms,
        "execution_duration": last.end_ms - last.start_ms,
        "run_duration": sum(a.end_ms - a.start_ms for a in task_run.attempts),
        "notebook_output": {"result": result.exit_value, "truncated": result.exit_truncated}
        if result and result.exit_value is not None else {},
        "task_values": result.task_values if result else {},
    }


def read_prior_run(run_dir: Path, plan: Plan) -> tuple[dict[str, TaskRun], dict[str, str]]:
    """The tasks that succeeded in an earlier run of ``plan`` (from its ``run.json``, with their
    notebooks' results), and its job parameters: what a repair run keeps."""
    path = Path(run_dir) / "run.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {t["task_key"]: t for t in data["tasks"]}
        parameters = {p["name"]: p["value"] for p in data.get("job_parameters", [])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--repair {run_dir}: not the folder of a plan run ({path}: {exc})") from None
    if data.get("run_name") != plan.name:
        raise InputError(f"--repair {run_dir}: a run of plan {data.get('run_name')!r}, not of {plan.name!r}")
    kept: dict[str, TaskRun] = {}
    for task in plan.tasks:
        entry = entries.get(task.task_key)
        status = (entry or {}).get("state", {}).get("result_state")
        if entry is None or status not in SUCCEEDED:
            continue
        attempts = []
        for a in entry.get("attempts", []):
            result = None
            if a.get("output"):
                with contextlib.suppress(InputError):  # moved or deleted: the task is kept, not its values
                    result = read_result(a["output"])
            error = CellError.from_json(a["error"]) if a.get("error") else None
            attempts.append(Attempt(a["attempt_number"], task_state(a["result_state"]), a["start_time"],
                                    a["end_time"], a.get("output"), result, error))
        kept[task.task_key] = TaskRun(task, entry["run_id"], task_state(status), attempts, "kept from the repaired run")
    return kept, parameters


def _state(result_state: TaskState | str, message: str) -> dict[str, Any]:
    # Every task of a finished run is TERMINATED; why one did not run is in its result_state.
    return {"life_cycle_state": "TERMINATED", "result_state": str(result_state), "state_message": message or ""}


def write_run_json(run: PlanRun) -> Path:
    path = run.output_dir / "run.json"
    path.write_text(json.dumps(runs_get(run), indent=2, default=str), encoding="utf-8")
    return path


def event_line(event: str, task_run: TaskRun) -> str:
    """One plain console line per task event (also what a non-terminal shows)."""
    clock = time.strftime("%H:%M:%S")
    key = task_run.task.task_key
    if event == "started":
        return f"{clock} {key}: started (attempt {len(task_run.attempts) + 1})"
    if event == "retry":
        last = task_run.last
        return f"{clock} {key}: attempt {len(task_run.attempts)} ended {last.status if last else '?'}; retrying"
    if event == "skipped":
        return f"{clock} {key}: {task_run.status} ({task_run.reason})"
    last = task_run.last
    seconds = f" in {(last.end_ms - last.start_ms) / 1000:.1f} s" if last else ""
    detail = ""
    if last and last.error:
        cell = "" if last.error.cell_index is None else f" at cell {last.error.cell_index}"
        detail = f"{cell}: {last.error.ename}: {last.error.evalue[:160]}"
    return f"{clock} {key}: {task_run.status}{seconds}{detail}"


def live_table(run: PlanRun) -> Any:
    """The live view of a plan run in a terminal: each task's state, attempt and elapsed time."""
    from rich.table import Table  # lazy: only a terminal shows it, and rich takes a while to import

    now = int(time.time() * 1000)
    table = Table("task", "state", "attempt", "seconds", "detail", title=f"{run.plan.name} ({run.mode})")
    colours = {"SUCCESS": "green", "FAILED": "red", "TIMEDOUT": "yellow", "RUNNING": "cyan"}
    for task_run in run.tasks.values():
        last = task_run.last
        attempt = len(task_run.attempts) + (1 if task_run.status == RUNNING else 0)
        if task_run.status == RUNNING:
            start = last.end_ms if last else (run.start_ms or now)
            seconds = f"{(now - start) / 1000:.1f}"
        else:
            seconds = f"{(last.end_ms - last.start_ms) / 1000:.1f}" if last else ""
        error = last.error if last else None
        detail = task_run.reason or (f"{error.ename}: {error.evalue[:60]}" if error else "")
        colour = colours.get(task_run.status, "white")
        table.add_row(task_run.task.task_key, f"[{colour}]{task_run.status}[/{colour}]",
                      str(attempt or ""), seconds, detail)
    return table
