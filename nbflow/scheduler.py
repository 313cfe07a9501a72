"""Running a plan: the DAG loop of a Databricks job, sequential or with N tasks at once.

The loop follows the Jobs API: ``run_if`` decides whether a task whose dependencies are done
runs, is UPSTREAM_FAILED or EXCLUDED; retries follow ``max_retries``, ``min_retry_interval_millis``
and ``retry_on_timeout``; task and job timeouts stop attempts; the job's result comes from its
leaf tasks.

The seam: the loop decides what runs and when; an :class:`nbflow.executor.Executor` runs each
attempt and resolves a future with its outcome. By default that is a :class:`nbflow.pool.WorkerPool`
(each attempt in a worker process, in a fresh kernel started ahead of need, so a task that hangs,
dies or is killed costs that task only); tests script outcomes with
:class:`nbflow.fake_executor.FakeExecutor`. The loop itself is one thread: it takes ready tasks
from :class:`graphlib.TopologicalSorter`, hands attempts to the executor, and sleeps on one queue
that the futures' callbacks (and :meth:`Scheduler.cancel`) fill, until the next of those events,
the job's deadline, or a retry's interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import psutil

from .errors import InputError
from .executor import Executor, Outcome, Request
from .lifecycle import interruption
from .notebook_facts import uses_spark, wants_cluster
from .params import Param, widget_string
from .plan import Plan
from .plan.references import resolve
from .pool import WorkerPool
from .pool_client import ServiceExecutor, service_available
from .project import project_dir
from .runs import (
    CANCELED,
    CANCELED_STATES,
    EXCLUDED,
    FAILED,
    PENDING,
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
from .task_spec import TaskSpec, run_context

STOP_GRACE_S = 30.0  # how long interrupted attempts get to save and stop before they are killed
KILL_GRACE_S = 5.0  # how long a killed attempt gets to be reported before the run gives up on it
KERNEL_MEMORY = 300 * 2**20  # about what a kernel with Spark Connect attached takes


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the loop ------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Flight:
    """An attempt handed to the executor, until its future resolves."""

    task_run: TaskRun
    number: int
    submitted_ms: int


class Scheduler:
    """One run of a plan. ``executor`` runs the attempts; one given by the caller (a long-lived
    server's pool) is shared and outlives the run; without one, the run starts a
    :class:`WorkerPool` sized for it and closes it at the end."""

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
        executor: Executor | None = None,
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
        self._shared = executor
        # Every attempt's context: this run's, built once (project, secrets, interpreter...);
        # each attempt adds its upstream task values.
        self._context = run_context(inherited={**self.context, "run_id": run_id})
        self.executor: Executor | None = self._shared
        # Shared with cancel() from other threads: the stop flags, the attempts in flight, the
        # task states they change.
        self._lock = threading.Lock()
        self._cancelled = False
        self._interrupting = False  # a stop that interrupts running attempts (not --fail-fast's)
        self._flights: dict[Future[Outcome], _Flight] = {}
        # The loop's own (one thread): what woke it (a resolved future; None from cancel()), the
        # tasks ready to start in plan order, the retries waiting for their interval.
        self._events: queue.Queue[Future[Outcome] | None] = queue.Queue()
        self._order: list[str] = []  # the plan's order, set by execute()
        self._position: dict[str, int] = {}
        self._sorter: TopologicalSorter[str] = TopologicalSorter()
        self._ready: list[tuple[int, str]] = []
        self._retries: list[tuple[float, int, str]] = []  # (due on the monotonic clock, position, key)
        self._running = 0  # tasks started and not yet final: an attempt in flight or a retry waiting
        self._deadline: float | None = None

    def _start_pool(self) -> Executor | None:
        """What runs this run's attempts: the warm kernels of the project's cluster (its pool
        service) when a cluster runs or the plan uses Spark; else workers of this run, one per
        concurrent task plus two warming the next kernels (on a sequential plan of short tasks,
        one warming worker cannot keep up)."""
        keys = [k for k, t in self.run.tasks.items() if t.status == PENDING]
        if not keys:
            return None
        spark = any(uses_spark(path) for path in dict.fromkeys(self.notebooks[k] for k in keys))
        project = project_dir()
        engine = self.context.get("engine") or "auto"
        options = {"project": str(project), "engine": engine, "spark": spark}

        def own_pool() -> WorkerPool:
            return WorkerPool(min(len(keys), self.max_workers + 2), options)

        minutes = self.plan.cluster.autotermination_minutes if self.plan.cluster is not None else None
        cluster = spark or any(wants_cluster(path) for path in dict.fromkeys(self.notebooks[k] for k in keys))
        if service_available(project, engine, cluster, minutes):
            return ServiceExecutor(project, min(len(keys), self.max_workers), own_pool)
        return own_pool()

    def execute(self) -> PlanRun:
        """Run the plan; the run as it ended (also on Ctrl-C, which is re-raised once the running
        attempts have stopped)."""
        run = self.run
        run.output_dir.mkdir(parents=True, exist_ok=True)
        run.start_ms = _now_ms()
        self._deadline = time.monotonic() + self.plan.timeout_seconds if self.plan.timeout_seconds else None
        self._order = [k for k in self.plan.order() if k in run.tasks]
        self._position = {k: i for i, k in enumerate(self._order)}
        self._sorter = TopologicalSorter({k: self.deps[k] for k in self._order})
        self._sorter.prepare()
        try:
            if self.executor is None:
                self.executor = self._start_pool()
            self._loop()
        except KeyboardInterrupt:
            self._stop_all(CANCELED, f"the run was cancelled ({interruption()})")
            self._drain()
            with self._lock:
                for task_run in self.run.tasks.values():
                    if task_run.status == RUNNING:  # claimed when the interrupt came, not yet handed over
                        task_run.status = CANCELED
            raise
        finally:
            done = _now_ms()
            if self.executor is not None and self.executor is not self._shared:
                self.executor.close()
            run.end_ms = _now_ms()
            run.cleanup_ms = run.end_ms - done
            run.result_state = self._result()
            run.resume_from = [k for k in self._order if run.tasks[k].status not in SUCCEEDED]
        return run

    def _result(self) -> TaskState:
        """The run's result: its tasks' (the Jobs API's leaf rule), unless a stop cut some short.
        A cancel that came after every task had ended changes nothing: the run is what its tasks say."""
        if not self._cancelled:
            return job_result(self.run.tasks, self.deps)
        stopped = self.run.result_state or CANCELED
        if stopped == CANCELED and not any(t.status in CANCELED_STATES for t in self.run.tasks.values()):
            return job_result(self.run.tasks, self.deps)
        return stopped

    def _loop(self) -> None:
        """Start what is ready, then sleep until an attempt ends, a retry is due, the job's
        deadline passes or the run is cancelled; until no task is ready or running."""
        while True:
            self._due_retries()  # before starting what is ready: a retry ended by a stop frees its slot
            self._start_ready()
            if self._interrupting:
                self._drain()
                return
            if not self._ready and not self._running:
                return
            wakes = [t for t in (self._deadline, self._retries[0][0] if self._retries else None) if t is not None]
            try:
                event = self._events.get(timeout=max(min(wakes) - time.monotonic(), 0) if wakes else None)
            except queue.Empty:
                event = None
            if event is not None:
                self._ended(event)
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._stop_all(TIMEDOUT, "the job's timeout expired")

    def _start_ready(self) -> None:
        """Start the ready tasks, first in plan order first, while there are free slots; a task
        that does not run takes its final state, and may make others ready."""
        while True:
            for key in self._sorter.get_ready():
                heapq.heappush(self._ready, (self._position[key], key))
            progressed = False
            while self._ready and self._running < self.max_workers:
                _, key = heapq.heappop(self._ready)
                task_run = self.run.tasks[key]
                if self._claim(task_run):
                    self._running += 1
                    self._begin(task_run, 0)
                else:
                    self._sorter.done(key)
                progressed = True
            if not progressed:
                return

    def _claim(self, task_run: TaskRun) -> bool:
        """Whether a task whose dependencies all ended runs now (then it is RUNNING), or takes its
        final state at once (skipped, excluded, cancelled)."""
        dep_states = [self.run.tasks[d].status for d in self.deps[task_run.task.task_key]]
        with self._lock:
            stopped = self._cancelled or task_run.status != PENDING
            runs, otherwise = decide(task_run.task.run_if, dep_states)
            go = not stopped and not task_run.task.disabled and runs
            if go:
                task_run.status = RUNNING  # claimed under the lock a stop takes too
        if go:
            return True
        if stopped:
            if task_run.status == PENDING:
                self._skip(task_run, CANCELED, "the run stopped before this task started")
        elif task_run.task.disabled:
            self._skip(task_run, EXCLUDED, "disabled")
        else:
            assert otherwise, "decide names the state of a task that does not run"
            self._skip(task_run, otherwise, f"run_if {task_run.task.run_if} not met")
        return False

    def _skip(self, task_run: TaskRun, status: TaskState, reason: str) -> None:
        task_run.status, task_run.reason = status, reason
        self._event("skipped", task_run)

    def _begin(self, task_run: TaskRun, number: int) -> None:
        """Hand attempt ``number`` of a claimed task to the executor."""
        key = task_run.task.task_key
        start = _now_ms()
        try:
            self._output(key, number).unlink(missing_ok=True)  # an earlier run's notebook must not pass for this one
            try:
                request = self._request(task_run, number)
            except (InputError, KeyError, IndexError) as exc:
                self._attempted(task_run, Attempt(number, FAILED, start, _now_ms(), None,
                                                  error=CellError(None, "ParameterError", str(exc))))
                return
            self._event("started", task_run)
            assert self.executor is not None  # a task to run means a pool was started
            with self._lock:  # a stop either sees this attempt in flight, or this sees the stop
                future = None if self._cancelled else self.executor.submit(request)
                if future is not None:
                    self._flights[future] = _Flight(task_run, number, start)
        except Exception as exc:  # a defect must fail this task, never hang the run
            self._attempted(task_run, Attempt(number, FAILED, start, _now_ms(), None,
                                              error=CellError(None, type(exc).__name__, str(exc))))
            return
        if future is None:
            self._attempted(task_run, Attempt(number, CANCELED, start, _now_ms(), None,
                                              error=CellError(None, "Cancelled", "the run stopped")))
            return
        future.add_done_callback(self._events.put)  # at once if it is already resolved

    def _output(self, task_key: str, number: int) -> Path:
        suffix = "" if number == 0 else f".attempt-{number}"
        return self.run.output_dir / f"{task_key}{suffix}.ipynb"

    def _request(self, task_run: TaskRun, number: int) -> Request:
        """Attempt ``number`` of a task as the worker reads it. Raises InputError (or KeyError,
        IndexError) for a parameter whose ``{{...}}`` reference cannot be resolved."""
        task = task_run.task
        output = self._output(task.task_key, number)
        parameters = {name: Param(resolve(v, self.run), "task parameter") for name, v in task.parameters.items()}
        # Job parameters are pushed down to every task and win over task parameters.
        parameters.update({name: Param(v, "job parameter") for name, v in self.run.job_parameters.items()})
        # Every upstream task, by the runtime's contract (taskValues.get tells "not upstream" from
        # "set no such value"): the walk covers the upstream tasks, not the whole plan.
        values = {k: (t.last.result.task_values if t.last and t.last.result else {})
                  for k in self.plan.upstream(task.task_key) if (t := self.run.tasks.get(k)) is not None}
        timeout: float | None = task.timeout_seconds or None
        if self._deadline is not None:
            left = max(self._deadline - time.monotonic(), 0.1)
            timeout = min(timeout, left) if timeout else left
        return TaskSpec(notebook=str(self.notebooks[task.task_key]), task_key=task.task_key, parameters=parameters,
                        timeout=timeout, output_path=str(output), output_log=str(output.with_suffix(".log")),
                        context=dataclasses.replace(self._context, job_task_values=values))

    def _ended(self, future: Future[Outcome], abandoned: bool = False) -> None:
        """An attempt's future resolved (or, ``abandoned``, never will): record the attempt."""
        with self._lock:
            flight = self._flights.pop(future, None)
        if flight is None:
            return  # already recorded (the drain and the queue both report it)
        number, start = flight.number, flight.submitted_ms
        if abandoned or future.cancelled():  # withdrawn before it started, or killed and silent
            evalue = "the attempt did not stop when killed" if abandoned else "the run stopped"
            attempt = Attempt(number, CANCELED, start, _now_ms(), None,
                              error=CellError(None, "Cancelled", evalue))
        elif (exc := future.exception()) is not None:  # a defect must fail this task, never hang the run
            attempt = Attempt(number, FAILED, start, _now_ms(), None,
                              error=CellError(None, type(exc).__name__, str(exc)))
        else:
            o = future.result()
            attempt = Attempt(number, o.status, o.start_ms, o.end_ms, o.output, o.result, o.error, o.setup_ms)
        self._attempted(flight.task_run, attempt)

    def _attempted(self, task_run: TaskRun, attempt: Attempt) -> None:
        """Record an attempt: the task retries (after its interval) or takes its final state."""
        task = task_run.task
        task_run.attempts.append(attempt)
        retryable = attempt.status == FAILED or (attempt.status == TIMEDOUT and task.retry_on_timeout)
        retries_left = task.max_retries == -1 or attempt.number < task.max_retries
        if attempt.status == SUCCESS or not retryable or not retries_left or self._cancelled:
            self._final(task_run)
            return
        self._event("retry", task_run)
        # The interval runs from the start of the failed attempt (its kernel's, not its wait's).
        due = time.monotonic() + (attempt.start_ms + task.min_retry_interval_millis - _now_ms()) / 1000
        heapq.heappush(self._retries, (due, self._position[task.task_key], task.task_key))

    def _due_retries(self) -> None:
        """Start the retries whose interval is over; once the run stops, none is left waiting."""
        while self._retries and (self._cancelled or self._retries[0][0] <= time.monotonic()):
            _, _, key = heapq.heappop(self._retries)
            task_run = self.run.tasks[key]
            last = task_run.last
            assert last is not None
            if self._cancelled:
                self._final(task_run)
            else:
                self._begin(task_run, last.number + 1)

    def _final(self, task_run: TaskRun) -> None:
        """A task's final state, from its last attempt; its dependents may now be ready."""
        last = task_run.last
        assert last is not None
        with self._lock:
            task_run.status = last.status
            if self._cancelled and last.status in (FAILED, CANCELED):
                # Stopped by the run, not by its own fault: a job timeout times the task out.
                task_run.status = TIMEDOUT if self.run.result_state == TIMEDOUT else CANCELED
            stopped = self._cancelled
        self._running -= 1
        self._sorter.done(task_run.task.task_key)
        self._event("finished", task_run)
        if self.fail_fast and task_run.status not in SUCCEEDED and not stopped:
            # No new task starts; running ones finish (their results are kept).
            self._stop_all(FAILED, f"--fail-fast: task {task_run.task.task_key} ended {task_run.status}",
                           interrupt=False)

    def _drain(self) -> None:
        """After a stop that interrupts: wait for the running attempts to stop, kill those still
        running after STOP_GRACE_S, and record every one (one not reported within KILL_GRACE_S
        of its kill is recorded CANCELED all the same, so the run ends)."""
        deadline = time.monotonic() + STOP_GRACE_S
        killed = False
        while True:
            self._due_retries()  # the stop ends the waiting retries
            with self._lock:
                flights = list(self._flights)
            for future in flights:
                if future.done():  # resolved, or withdrawn before it started (done() counts that)
                    self._ended(future)
            with self._lock:
                flights = list(self._flights)
            if not flights:
                return
            now = time.monotonic()
            if now < deadline:
                # Woken by a future's callback (a withdrawal runs it too): concurrent.futures.wait
                # would not see a withdrawal until the executor acknowledged it.
                with contextlib.suppress(queue.Empty):
                    self._events.get(timeout=deadline - now)
                continue
            if killed:
                for future in flights:
                    self._ended(future, abandoned=True)
                return
            assert self.executor is not None
            for future in flights:
                self.executor.kill(future)
            deadline, killed = time.monotonic() + KILL_GRACE_S, True

    def cancel(self, reason: str = "the run was cancelled") -> None:
        """Stop the run from another thread: running tasks are interrupted, the rest CANCELED."""
        self._stop_all(CANCELED, reason)

    def _stop_all(self, status: ResultState, reason: str, interrupt: bool = True) -> None:
        with self._lock:
            self._cancelled = True
            self._interrupting = self._interrupting or interrupt
            self.run.result_state = status
            for task_run in self.run.tasks.values():
                if task_run.status == PENDING:
                    task_run.status, task_run.reason = CANCELED, reason
                elif task_run.status == RUNNING:
                    task_run.reason = reason
            flights = list(self._flights)
        for future in flights:
            if interrupt:
                assert self.executor is not None
                self.executor.interrupt(future)
            else:
                future.cancel()  # withdraw an attempt still waiting for a worker; running ones go on
        self._events.put(None)  # wake the loop

    def _event(self, event: str, task_run: TaskRun) -> None:
        with contextlib.suppress(Exception):  # a closed console (| head) must not stop the run
            self.on_event(event, task_run)


def default_workers(tasks: int) -> int:
    """Every ready task at once, capped for the machine: kernels mostly wait (on Spark, on I/O),
    so four per core, and no more than the free memory holds."""
    by_memory = max(int(psutil.virtual_memory().available // KERNEL_MEMORY), 1)
    return max(1, min(tasks, 4 * (os.cpu_count() or 2), by_memory))
