"""Running a plan: the DAG loop of a Databricks job, sequential or with N tasks at once.

Each task attempt runs in a worker process of a :class:`nbflow.pool.WorkerPool`, in a fresh
kernel that the worker started ahead of need, so a task that hangs, dies or is killed costs that
task only. The loop follows the Jobs
API: ``run_if`` decides whether a task whose dependencies are done runs, is UPSTREAM_FAILED or
EXCLUDED; retries follow ``max_retries``, ``min_retry_interval_millis`` and ``retry_on_timeout``;
task and job timeouts stop kernels; the job's result comes from its leaf tasks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from .errors import InputError
from .lifecycle import interruption
from .notebooks import uses_spark
from .params import Param, widget_string
from .plan import REFERENCE, Plan, Task
from .pool import Worker, WorkerPool
from .project import project_dir
from .results import read_result
from .runner import run_context
from .runs import (
    CANCELED,
    EXCLUDED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    SUCCESS,
    TIMEDOUT,
    Attempt,
    CellError,
    PlanRun,
    ResultState,
    TaskRun,
    TaskState,
    decide,
    job_result,
)
from .task_spec import TaskSpec

STOP_GRACE_S = 30.0  # how long interrupted workers get to save and stop before they are killed
KERNEL_MEMORY = 300 * 2**20  # about what a kernel with Spark Connect attached takes


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- references ----------------------------------------------------------------------------------
def resolve(value: Any, run: PlanRun) -> Any:
    """Replace ``{{job.*}}`` and ``{{tasks.*}}`` references by their values (strings)."""
    if not isinstance(value, str):
        return value
    start = dt.datetime.fromtimestamp(run.start_ms / 1000, dt.timezone.utc)

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if parts[0] == "job":
            if parts[1:2] == ["parameters"]:
                return run.job_parameters[parts[2]]
            if parts[1] == "start_time":
                return _start_time(start, parts[2])
            return {"id": "", "name": run.plan.name, "run_id": run.run_id, "repair_count": "0"}[parts[1]]
        if parts[0] == "tasks":
            attempt = run.tasks[parts[1]].last
            result = attempt.result if attempt else None
            if result is None:
                raise InputError(f"{match.group(0)}: task {parts[1]!r} has no result in this run")
            if parts[2] == "exit_value":
                return result.exit_value or ""
            if parts[3] not in result.task_values:
                raise InputError(f"{match.group(0)}: task {parts[1]!r} set no task value {parts[3]!r}")
            found = result.task_values[parts[3]]
            return found if isinstance(found, str) else json.dumps(found)
        return match.group(0)

    return REFERENCE.sub(one, value)


def _start_time(start: dt.datetime, name: str) -> str:
    values = {
        "iso_date": start.date().isoformat(), "iso_datetime": start.isoformat(timespec="seconds"),
        "year": str(start.year), "month": str(start.month), "day": str(start.day), "hour": str(start.hour),
        "minute": str(start.minute), "second": str(start.second),
        "timestamp_ms": str(int(start.timestamp() * 1000)), "is_weekday": str(start.weekday() < 5).lower(),
    }
    return values[name]


# -- the loop ------------------------------------------------------------------------------------
class Scheduler:
    def __init__(
        self,
        plan: Plan,
        notebooks: Mapping[str, Path],
        output_dir: Path,
        run_id: str,
        mode: str = "sequential",
        max_workers: int | None = None,
        job_parameters: Mapping[str, str] | None = None,
        only: set[str] | None = None,
        fail_fast: bool = False,
        context: Mapping[str, Any] | None = None,
        on_event: Callable[[str, TaskRun], None] | None = None,
        prior: Mapping[str, TaskRun] | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        # ``prior``: tasks that succeeded in the run being repaired; they count, but do not run again.
        prior = prior or {}
        selected = only if only is not None else {t.task_key for t in plan.tasks}
        selected = set(selected) | set(prior)
        self.deps = {t.task_key: [d for d in t.depends_on if d in selected] for t in plan.tasks
                     if t.task_key in selected}
        self.plan, self.notebooks, self.mode, self.fail_fast = plan, notebooks, mode, fail_fast
        self.max_workers = 1 if mode == "sequential" else max(1, max_workers or default_workers(len(selected)))
        self.context = dict(context or {})
        self.on_event = on_event or (lambda event, task: None)
        params = {p.name: widget_string(p.default) for p in plan.parameters}
        params.update(job_parameters or {})
        base = 10_000 * (int(time.time()) % 100_000)
        tasks = {t.task_key: prior.get(t.task_key) or TaskRun(t, base + i + 1) for i, t in enumerate(plan.tasks)
                 if t.task_key in selected}
        self.run = PlanRun(plan, run_id, output_dir, mode, tasks, job_parameters=params)
        self._lock = threading.Lock()
        self._running: dict[str, Worker] = {}
        self._finished: queue.Queue[str] = queue.Queue()  # task threads report their end here
        self._cancelled = False
        # A pool given by the caller (a long-lived server) is shared and outlives this run.
        self._shared_pool = pool
        self._pool: WorkerPool | None = pool

    def _start_pool(self) -> WorkerPool | None:
        """Workers for this run: one per concurrent task plus two warming the next kernels (on a
        sequential plan of short tasks, one warming worker cannot keep up)."""
        keys = [k for k, t in self.run.tasks.items() if t.status == "PENDING"]
        if not keys:
            return None
        spark = any(uses_spark(path) for path in dict.fromkeys(self.notebooks[k] for k in keys))
        options = {"project": str(project_dir()), "engine": self.context.get("engine") or "auto", "spark": spark}
        return WorkerPool(min(len(keys), self.max_workers + 2), options)

    def execute(self) -> PlanRun:
        """Run the plan: event-driven, each task and edge handled once.

        A task becomes ready when its last dependency ends (a count per task, not a scan of all
        tasks); finished tasks come back through a queue the loop waits on. The ready task that
        comes first in the plan's order starts first, so a sequential run follows that order.
        """
        run = self.run
        run.output_dir.mkdir(parents=True, exist_ok=True)
        run.start_ms = _now_ms()
        deadline = time.monotonic() + self.plan.timeout_seconds if self.plan.timeout_seconds else None
        order = [k for k in self.plan.order() if k in run.tasks]
        position = {k: i for i, k in enumerate(order)}
        dependents: dict[str, list[str]] = {k: [] for k in order}
        waiting: dict[str, int] = {}
        for key in order:
            unfinished = {d for d in self.deps[key] if run.tasks[d].status in ("PENDING", "RUNNING")}
            waiting[key] = len(unfinished)
            for dep in unfinished:
                dependents[dep].append(key)
        ready = [position[k] for k in order if run.tasks[k].status == "PENDING" and waiting[k] == 0]
        heapq.heapify(ready)
        threads: dict[str, threading.Thread] = {}
        running = 0

        def ended(key: str) -> None:
            """A task reached its final state: its dependents may now be ready."""
            for dependent in dependents[key]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, position[dependent])

        try:
            self._pool = self._shared_pool or self._start_pool()
            while ready or running:
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop_all(TIMEDOUT, "the job's timeout expired")
                    self._wait_for(threads)
                    break
                while ready and running < self.max_workers:
                    key = order[heapq.heappop(ready)]
                    if self._claim(run.tasks[key]):
                        running += 1
                        thread = threading.Thread(target=self._task, args=(run.tasks[key], deadline), daemon=True)
                        threads[key] = thread
                        thread.start()
                    else:
                        ended(key)
                if not running:
                    continue
                wait = 0.5 if deadline is None else min(max(deadline - time.monotonic(), 0), 0.5)
                try:
                    key = self._finished.get(timeout=wait)
                except queue.Empty:
                    continue  # the deadline is checked at the top
                running -= 1
                ended(key)
        except KeyboardInterrupt:
            self._stop_all(CANCELED, f"the run was cancelled ({interruption()})")
            self._wait_for(threads)
            raise
        finally:
            done = _now_ms()
            if self._pool is not None and self._pool is not self._shared_pool:
                self._pool.close()
            run.end_ms = _now_ms()
            run.cleanup_ms = run.end_ms - done
            run.result_state = job_result(run.tasks, self.deps) if not self._cancelled else run.result_state or CANCELED
            run.resume_from = [k for k in order if run.tasks[k].status not in SUCCEEDED]
        return run

    def _claim(self, task_run: TaskRun) -> bool:
        """Whether a task whose dependencies all ended runs now (then it is RUNNING), or takes its
        final state at once (skipped, excluded, cancelled)."""
        dep_states = [self.run.tasks[d].status for d in self.deps[task_run.task.task_key]]
        with self._lock:
            stopped = self._cancelled or task_run.status != "PENDING"
            go = not stopped and not task_run.task.disabled and decide(task_run.task.run_if, dep_states)[0]
            if go:
                task_run.status = RUNNING  # claimed under the lock a stop takes too
        if go:
            return True
        if stopped:
            if task_run.status == "PENDING":
                self._skip(task_run, CANCELED, "the run stopped before this task started")
        elif task_run.task.disabled:
            self._skip(task_run, EXCLUDED, "disabled")
        else:
            _, state = decide(task_run.task.run_if, dep_states)
            assert state, "decide names the state of a task that does not run"
            self._skip(task_run, state, f"run_if {task_run.task.run_if} not met")
        return False

    def _skip(self, task_run: TaskRun, status: TaskState, reason: str) -> None:
        task_run.status, task_run.reason = status, reason
        self.on_event("skipped", task_run)

    def _wait_for(self, threads: Mapping[str, threading.Thread]) -> None:
        """Wait for the interrupted workers; kill those that do not stop within STOP_GRACE_S."""
        deadline = time.monotonic() + STOP_GRACE_S
        for thread in threads.values():
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            stuck = list(self._running.values())
        for worker in stuck:
            worker.kill()
        for thread in threads.values():
            thread.join(5)

    def cancel(self, reason: str = "the run was cancelled") -> None:
        """Stop the run from another thread: running tasks are interrupted, the rest CANCELED."""
        self._stop_all(CANCELED, reason)

    def _stop_all(self, status: ResultState, reason: str, interrupt: bool = True) -> None:
        with self._lock:
            self._cancelled = True
            self.run.result_state = status
            if interrupt:
                for worker in self._running.values():
                    worker.interrupt()
            for task_run in self.run.tasks.values():
                if task_run.status == "PENDING":
                    task_run.status, task_run.reason = CANCELED, reason
                elif task_run.status == "RUNNING":
                    task_run.reason = reason

    def _task(self, task_run: TaskRun, job_deadline: float | None) -> None:
        try:
            self._run_task(task_run, job_deadline)
        finally:
            self._finished.put(task_run.task.task_key)  # whatever happened: the loop must hear of it

    def _run_task(self, task_run: TaskRun, job_deadline: float | None) -> None:
        task = task_run.task
        number = 0
        while True:
            try:
                attempt = self._attempt(task_run, number, job_deadline)
            except Exception as exc:  # a defect must fail this task, never hang the run
                attempt = Attempt(number, FAILED, _now_ms(), _now_ms(), None,
                                  error=CellError(None, type(exc).__name__, str(exc)))
            task_run.attempts.append(attempt)
            retryable = attempt.status == FAILED or (attempt.status == TIMEDOUT and task.retry_on_timeout)
            retries_left = task.max_retries == -1 or number < task.max_retries
            if attempt.status == SUCCESS or not retryable or not retries_left or self._cancelled:
                break
            self._event("retry", task_run)
            # The interval runs from the start of the failed attempt (its kernel's, not its wait's).
            wait_until = (attempt.start_ms + task.min_retry_interval_millis) / 1000
            while time.time() < wait_until and not self._cancelled:
                time.sleep(min(0.1, max(wait_until - time.time(), 0)))
            if self._cancelled:
                break
            number += 1
        with self._lock:
            task_run.status = attempt.status
            if self._cancelled and attempt.status in (FAILED, CANCELED):
                # Stopped by the run, not by its own fault: a job timeout times the task out.
                task_run.status = TIMEDOUT if self.run.result_state == TIMEDOUT else CANCELED
        self._event("finished", task_run)
        if self.fail_fast and task_run.status not in SUCCEEDED:
            # No new task starts; running ones finish (their results are kept).
            self._stop_all(FAILED, f"--fail-fast: task {task.task_key} ended {task_run.status}", interrupt=False)

    def _event(self, event: str, task_run: TaskRun) -> None:
        with contextlib.suppress(Exception):  # a closed console (| head) must not stop the run
            self.on_event(event, task_run)

    def _attempt(self, task_run: TaskRun, number: int, job_deadline: float | None) -> Attempt:
        task = task_run.task
        suffix = "" if number == 0 else f".attempt-{number}"
        output = self.run.output_dir / f"{task.task_key}{suffix}.ipynb"
        start = _now_ms()
        output.unlink(missing_ok=True)  # an earlier run's notebook must not pass for this one
        try:
            parameters = {name: Param(resolve(v, self.run), "task parameter") for name, v in task.parameters.items()}
        except (InputError, KeyError, IndexError) as exc:
            return Attempt(number, FAILED, start, _now_ms(), None,
                           error=CellError(None, "ParameterError", str(exc)))
        # Job parameters are pushed down to every task and win over task parameters.
        parameters.update({name: Param(v, "job parameter") for name, v in self.run.job_parameters.items()})
        # Every upstream task, by the runtime's contract (taskValues.get tells "not upstream" from
        # "set no such value"): the walk covers the upstream tasks, not the whole plan.
        values = {k: (t.last.result.task_values if t.last and t.last.result else {})
                  for k in self.plan.upstream(task.task_key) if (t := self.run.tasks.get(k)) is not None}
        self._event("started", task_run)
        assert self._pool is not None
        worker = self._pool.acquire(lambda: self._cancelled)
        if worker is None:
            return Attempt(number, CANCELED, start, _now_ms(), None,
                           error=CellError(None, "Cancelled", "the run stopped"))
        acquired = _now_ms()
        timeout: float | None = task.timeout_seconds or None
        if job_deadline is not None:
            left = max(job_deadline - time.monotonic(), 0.1)
            timeout = min(timeout, left) if timeout else left
        spec = _task_spec(task, self.notebooks[task.task_key], parameters, timeout, output,
                          {**self.context, "run_id": self.run.run_id, "job_task_values": values})
        with self._lock:
            self._running[task.task_key] = worker
            stopping = self._cancelled and self.run.result_state != FAILED  # a stop that interrupts
        try:
            reply = None if stopping or not worker.send(spec.to_json()) else worker.wait()
            died = worker.death() if reply is None and not stopping else None
        finally:
            with self._lock:
                self._running.pop(task.task_key, None)
            self._pool.release(worker, used=not stopping)
        end = _now_ms()
        if stopping:
            return Attempt(number, CANCELED, acquired, end, None, setup_ms=acquired - start,
                           error=CellError(None, "Cancelled", "the run stopped"))
        try:
            result = read_result(output)
        except InputError:
            sent = (reply or {}).get("error")
            failure = CellError.from_json(sent) if sent else CellError(None, "WorkerError", str(died))
            return Attempt(number, FAILED, acquired, end, None, error=failure, setup_ms=acquired - start)
        error = result.error
        if result.status == RUNNING and died:  # the worker died mid-notebook
            error = CellError(None, "WorkerError", died)
        status = result.status if result.status != RUNNING else FAILED
        return Attempt(number, status, acquired, end, str(output), result, error, setup_ms=acquired - start)


def _task_spec(task: Task, notebook: Path, parameters: dict[str, Param], timeout: float | None, output: Path,
               inherited: Mapping[str, Any]) -> TaskSpec:
    """The spec of one attempt of a task: its notebook and its printed output beside it, in the
    plan run's context (``inherited``: the run's id and upstream task values, the caller's)."""
    return TaskSpec(notebook=str(notebook), task_key=task.task_key, parameters=parameters, timeout=timeout,
                    output_path=str(output), output_log=str(output.with_suffix(".log")),
                    context=run_context(inherited=inherited))


def default_workers(tasks: int) -> int:
    """Every ready task at once, capped for the machine: kernels mostly wait (on Spark, on I/O),
    so four per core, and no more than the free memory holds."""
    by_memory = max(int(psutil.virtual_memory().available // KERNEL_MEMORY), 1)
    return max(1, min(tasks, 4 * (os.cpu_count() or 2), by_memory))
