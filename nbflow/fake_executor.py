"""An executor that runs no notebook: each attempt ends as a script says, in process.

It keeps the :class:`nbflow.executor.Executor` contract as the worker pool does (a request's
``timeout`` ends the attempt TIMEDOUT; ``interrupt`` ends a running attempt CANCELED; ``kill``
ends it as a killed worker's, FAILED with a WorkerError; an attempt not yet started is
withdrawn), so the scheduler's semantics (run_if, retries and their intervals, timeouts,
fail-fast, cancellation, repair) are testable in milliseconds, without a kernel or a process::

    fake = FakeExecutor({
        "flaky": [Script("FAILED", error="boom"), Script(exit_value="ok")],  # attempt 1, then 2 (and on)
        "slow": Script(seconds=0.2, task_values={"rows": 3}),
        "stuck": Script(hang=True),  # until its timeout, an interrupt or a kill
    }, workers=2)
    run = Scheduler(plan, notebooks, out, "run-1", executor=fake).execute()

A task with no script succeeds at once; a task's last script repeats for its later attempts.
What the fake saw is kept for assertions: :attr:`FakeExecutor.requests` (every request, in the
order submitted), :attr:`FakeExecutor.starts` (task key and monotonic time of each attempt that
started), :attr:`FakeExecutor.max_running`, :attr:`FakeExecutor.interrupted` and
:attr:`FakeExecutor.killed`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

from .executor import Outcome, Request
from .runs import CANCELED, FAILED, SUCCESS, TIMEDOUT, CellError, NotebookResult, TaskState, task_state


@dataclass(frozen=True)
class Script:
    """How one attempt goes."""

    status: str = SUCCESS  # SUCCESS, FAILED, TIMEDOUT or CANCELED, once ``seconds`` have passed
    seconds: float = 0.0
    exit_value: str | None = None  # dbutils.notebook.exit's value
    task_values: Mapping[str, Any] = field(default_factory=dict)  # dbutils.jobs.taskValues.set's
    error: str = "scripted failure"  # the error's message when the status is not SUCCESS
    hang: bool = False  # runs until its timeout, an interrupt or a kill, whatever ``seconds`` says
    # A notebook stuck where an interrupt does not reach: neither its timeout (which interrupts
    # its kernel) nor an interrupt ends it, only a kill.
    ignores_interrupt: bool = False
    raises: Exception | None = None  # the attempt's future raises this (a defect in an executor)


@dataclass(eq=False)
class _Attempt:
    request: Request
    future: Future[Outcome]
    script: Script
    submitted_ms: int
    start_ms: int = 0
    ended: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeExecutor:
    """Scripted attempts; ``workers`` caps how many run at once (None: no cap), as a pool's size
    does, so an attempt may wait, pending and withdrawable, for a free one."""

    def __init__(self, script: Mapping[str, Script | Sequence[Script]] | None = None,
                 workers: int | None = None) -> None:
        self.script = {k: [v] if isinstance(v, Script) else list(v) for k, v in (script or {}).items()}
        self.workers = workers
        self.requests: list[Request] = []
        self.starts: list[tuple[str, float]] = []
        self.max_running = 0
        self.interrupted: list[str] = []
        self.killed: list[str] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = defaultdict(int)
        self._attempts: dict[Future[Outcome], _Attempt] = {}
        self._queue: deque[_Attempt] = deque()
        self._running = 0
        # One timer thread for every scripted end: (due on the monotonic clock, sequence, action).
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._tick = threading.Condition(self._lock)
        self._closed = False
        self._clock = threading.Thread(target=self._run_timers, name="nbflow-fake-executor", daemon=True)
        self._clock.start()

    def __enter__(self) -> FakeExecutor:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def attempts_of(self, task_key: str) -> list[float]:
        """When each attempt of ``task_key`` started (monotonic seconds)."""
        return [at for key, at in self.starts if key == task_key]

    # -- the executor ------------------------------------------------------------------------
    def submit(self, request: Request) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        key = _key(request)
        with self._lock:
            scripts = self.script.get(key) or [Script()]
            attempt = _Attempt(request, future, scripts[min(self._counts[key], len(scripts) - 1)], _now_ms())
            self._counts[key] += 1
            self.requests.append(request)
            self._attempts[future] = attempt
            self._queue.append(attempt)
            self._admit()
        return future

    def interrupt(self, future: Future[Outcome]) -> None:
        with self._lock:
            attempt = self._attempts.get(future)
        if attempt is None or future.cancel():
            return
        self.interrupted.append(_key(attempt.request))
        if not attempt.script.ignores_interrupt:
            self._end(attempt, CANCELED, "Cancelled", "the attempt was interrupted")

    def kill(self, future: Future[Outcome]) -> None:
        with self._lock:
            attempt = self._attempts.get(future)
        if attempt is None or future.cancel():
            return
        self.killed.append(_key(attempt.request))
        self._end(attempt, FAILED, "WorkerError", "the worker process died (killed by signal 9)")

    def close(self) -> None:
        """Withdraw what waits, end what runs (CANCELED), stop the timer thread."""
        with self._lock:
            self._closed = True
            waiting, self._queue = list(self._queue), deque()
            running = [a for a in self._attempts.values() if a.start_ms and not a.ended]
            self._tick.notify_all()
        for attempt in waiting:
            attempt.future.cancel()
        for attempt in running:
            self._end(attempt, CANCELED, "Cancelled", "the executor closed")
        self._clock.join(5)

    # -- inside ------------------------------------------------------------------------------
    def _admit(self) -> None:
        """Start queued attempts while there are free workers. Under the lock."""
        while self._queue and (self.workers is None or self._running < self.workers):
            attempt = self._queue.popleft()
            if not attempt.future.set_running_or_notify_cancel():  # withdrawn while it waited
                self._attempts.pop(attempt.future, None)
                continue
            self._running += 1
            self.max_running = max(self.max_running, self._running)
            attempt.start_ms = _now_ms()
            self.starts.append((_key(attempt.request), time.monotonic()))
            script, timeout = attempt.script, attempt.request.timeout
            if timeout is not None and (script.hang or script.seconds > timeout) and not script.ignores_interrupt:
                self._at(timeout, partial(self._end, attempt, TIMEDOUT, "TimeoutError", "the task's timeout expired"))
            elif not script.hang:
                status = task_state(script.status)
                self._at(script.seconds, partial(self._end, attempt, status, "Exception", script.error, True))

    def _at(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the timer thread in ``seconds``. Under the lock."""
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._sequence), action))
        self._tick.notify_all()

    def _run_timers(self) -> None:
        while True:
            with self._tick:
                while not self._closed and (not self._timers or self._timers[0][0] > time.monotonic()):
                    self._tick.wait(self._timers[0][0] - time.monotonic() if self._timers else None)
                if self._closed:
                    return
                _, _, action = heapq.heappop(self._timers)
            action()  # outside the lock: resolving a future runs the scheduler's callbacks

    def _end(self, attempt: _Attempt, status: TaskState, ename: str, evalue: str, scripted: bool = False) -> None:
        """Resolve a running attempt (once), as scripted or as stopped, and start the next queued
        one on its worker."""
        with self._lock:
            if attempt.ended:
                return
            attempt.ended = True
            self._running -= 1
            self._attempts.pop(attempt.future, None)
            self._admit()
        script, end = attempt.script, _now_ms()
        if script.raises is not None and scripted:
            attempt.future.set_exception(script.raises)
            return
        error = None if status == SUCCESS else CellError(None, ename, evalue)
        ran = scripted  # it ran to its end: its exit and task values were set
        result = NotebookResult(
            notebook=attempt.request.notebook, output=None, status=status,
            exit_value=script.exit_value if ran else None, task_values=dict(script.task_values) if ran else {},
            error=error, task_key=_key(attempt.request),
        )
        attempt.future.set_result(Outcome(
            status, attempt.start_ms, end, None, result, error,
            setup_ms=attempt.start_ms - attempt.submitted_ms,
        ))


def _key(request: Request) -> str:
    """The task an attempt belongs to (a spec without a task key is named by its notebook)."""
    return request.task_key or request.notebook
