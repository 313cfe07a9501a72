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
import heapq
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .notebooks import uses_spark
from .params import widget_string
from .plan import Plan, Task
from .plan.references import resolve
from .pool import Worker, WorkerPool
from .project import project_dir
from .results import NotebookResult, read_result

SUCCESS, FAILED, TIMEDOUT, CANCELED = "SUCCESS", "FAILED", "TIMEDOUT", "CANCELED"
UPSTREAM_FAILED, UPSTREAM_CANCELED, EXCLUDED = "UPSTREAM_FAILED", "UPSTREAM_CANCELED", "EXCLUDED"
SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
SUCCEEDED = {SUCCESS, EXCLUDED}  # "Excluded tasks are skipped and treated as successful."
FAILED_STATES = {FAILED, TIMEDOUT, UPSTREAM_FAILED}
CANCELED_STATES = {CANCELED, UPSTREAM_CANCELED}
FAILURE_HANDLERS = {"ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED"}
STOP_GRACE_S = 30.0  # how long interrupted workers get to save and stop before they are killed
KERNEL_MEMORY = 300 * 2**20  # about what a kernel with Spark Connect attached takes


@dataclass
class Attempt:
    number: int
    status: str
    start_ms: int
    end_ms: int
    output: str | None
    result: NotebookResult | None = None
    error: dict[str, Any] | None = None
    setup_ms: int = 0  # waiting for a worker with a warm kernel


@dataclass
class TaskRun:
    task: Task
    run_id: int
    status: str = "PENDING"
    attempts: list[Attempt] = field(default_factory=list)
    reason: str = ""  # why a task did not run (run_if, disabled, cancelled)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class PlanRun:
    plan: Plan
    run_id: str
    output_dir: Path
    mode: str
    tasks: dict[str, TaskRun]
    start_ms: int = 0
    end_ms: int = 0
    result_state: str = ""
    job_parameters: dict[str, str] = field(default_factory=dict)
    resume_from: list[str] = field(default_factory=list)
    cleanup_ms: int = 0  # stopping the worker pool after the last task


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- run_if --------------------------------------------------------------------------------------
def decide(run_if: str, deps: list[str]) -> tuple[bool, str]:
    """Whether a task runs given its dependencies' final states; else the state it takes."""
    if deps and all(d == EXCLUDED for d in deps):
        return False, EXCLUDED  # "If all task dependencies are excluded, the task is also excluded"
    if any(d in CANCELED_STATES for d in deps) and run_if not in FAILURE_HANDLERS:
        return False, UPSTREAM_CANCELED
    succeeded = sum(d in SUCCEEDED for d in deps)
    failed = sum(d in FAILED_STATES for d in deps)
    executed = sum(d == SUCCESS for d in deps)
    rules = {
        "ALL_SUCCESS": (succeeded == len(deps), UPSTREAM_FAILED),
        "AT_LEAST_ONE_SUCCESS": (succeeded > 0, UPSTREAM_FAILED),
        "NONE_FAILED": (failed == 0 and executed > 0, UPSTREAM_FAILED),
        "ALL_DONE": (True, ""),
        "AT_LEAST_ONE_FAILED": (failed > 0, EXCLUDED),
        "ALL_FAILED": (failed == len(deps), EXCLUDED),
    }
    run, otherwise = rules[run_if]
    return (True, "") if (run or not deps) else (False, otherwise)


def job_result(tasks: Mapping[str, TaskRun], deps: Mapping[str, list[str]]) -> str:
    """SUCCESS, SUCCESS_WITH_FAILURES or FAILED, decided by the leaf tasks (Jobs API rule)."""
    downstream = {d for ds in deps.values() for d in ds}
    leaves = [k for k in tasks if k not in downstream]
    if all(t.status in SUCCEEDED for t in tasks.values()):
        return SUCCESS
    if any(tasks[k].status in CANCELED_STATES for k in leaves) and not any(
        tasks[k].status in FAILED_STATES for k in leaves
    ):
        return CANCELED
    if all(tasks[k].status in SUCCEEDED for k in leaves):
        return SUCCESS_WITH_FAILURES
    if any(tasks[k].status == TIMEDOUT for k in leaves) and not any(tasks[k].status == FAILED for k in leaves):
        return TIMEDOUT
    return FAILED


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
            from .lifecycle import interruption

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
                task_run.status = "RUNNING"  # claimed under the lock a stop takes too
        if go:
            return True
        if stopped:
            if task_run.status == "PENDING":
                self._skip(task_run, CANCELED, "the run stopped before this task started")
        elif task_run.task.disabled:
            self._skip(task_run, EXCLUDED, "disabled")
        else:
            self._skip(task_run, decide(task_run.task.run_if, dep_states)[1], f"run_if {task_run.task.run_if} not met")
        return False

    def _skip(self, task_run: TaskRun, status: str, reason: str) -> None:
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

    def _stop_all(self, status: str, reason: str, interrupt: bool = True) -> None:
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
                                  error={"cell_index": None, "ename": type(exc).__name__, "evalue": str(exc)})
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
            parameters = {name: [resolve(v, self.run), "task parameter"] for name, v in task.parameters.items()}
        except (InputError, KeyError, IndexError) as exc:
            return Attempt(number, FAILED, start, _now_ms(), None,
                           error={"cell_index": None, "ename": "ParameterError", "evalue": str(exc)})
        # Job parameters are pushed down to every task and win over task parameters.
        parameters.update({name: [v, "job parameter"] for name, v in self.run.job_parameters.items()})
        # Every upstream task, by the runtime's contract (taskValues.get tells "not upstream" from
        # "set no such value"): the walk covers the upstream tasks, not the whole plan.
        values = {k: (t.last.result.task_values if t.last and t.last.result else {})
                  for k in self.plan.upstream(task.task_key) if (t := self.run.tasks.get(k)) is not None}
        self._event("started", task_run)
        assert self._pool is not None
        worker = self._pool.acquire(lambda: self._cancelled)
        if worker is None:
            return Attempt(number, CANCELED, start, _now_ms(), None,
                           error={"cell_index": None, "ename": "Cancelled", "evalue": "the run stopped"})
        acquired = _now_ms()
        timeout: float | None = task.timeout_seconds or None
        if job_deadline is not None:
            left = max(job_deadline - time.monotonic(), 0.1)
            timeout = min(timeout, left) if timeout else left
        request = {
            "notebook": str(self.notebooks[task.task_key]), "task_key": task.task_key, "parameters": parameters,
            "timeout": timeout, "output_path": str(output), "output_log": str(output.with_suffix(".log")),
            "context": {**self.context, "run_id": self.run.run_id, "job_task_values": values},
        }
        with self._lock:
            self._running[task.task_key] = worker
            stopping = self._cancelled and self.run.result_state != FAILED  # a stop that interrupts
        try:
            reply = None if stopping or not worker.send(request) else worker.wait()
            died = worker.death() if reply is None and not stopping else None
        finally:
            with self._lock:
                self._running.pop(task.task_key, None)
            self._pool.release(worker, used=not stopping)
        end = _now_ms()
        if stopping:
            return Attempt(number, CANCELED, acquired, end, None, setup_ms=acquired - start,
                           error={"cell_index": None, "ename": "Cancelled", "evalue": "the run stopped"})
        try:
            result = read_result(output)
        except InputError:
            error = (reply or {}).get("error") or {"cell_index": None, "ename": "WorkerError", "evalue": died}
            return Attempt(number, FAILED, acquired, end, None, error=error, setup_ms=acquired - start)
        error = None if result.error is None else result.error.summary()
        if result.status == "RUNNING" and died:  # the worker died mid-notebook
            error = {"cell_index": None, "ename": "WorkerError", "evalue": died}
        status = result.status if result.status != "RUNNING" else FAILED
        return Attempt(number, status, acquired, end, str(output), result, error, setup_ms=acquired - start)


def default_workers(tasks: int) -> int:
    """Every ready task at once, capped for the machine: kernels mostly wait (on Spark, on I/O),
    so four per core, and no more than the free memory holds."""
    import psutil

    by_memory = max(int(psutil.virtual_memory().available // KERNEL_MEMORY), 1)
    return max(1, min(tasks, 4 * (os.cpu_count() or 2), by_memory))
