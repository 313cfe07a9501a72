"""The scheduler's seam: what runs one attempt of a task.

:class:`nbflow.scheduler.Scheduler` decides *what* runs and *when* (the DAG, ``run_if``,
retries, timeouts, cancellation); an :class:`Executor` runs each attempt it is handed and says
how it ended, through a :class:`concurrent.futures.Future` of an :class:`Outcome`. Two
implementations: :class:`nbflow.pool.WorkerPool` (worker processes with warm kernels) and
:class:`nbflow.fake_executor.FakeExecutor` (scripted outcomes, in process, no kernel), which
makes the scheduler's semantics testable in milliseconds.

The contract, which both keep:

- ``submit`` never blocks on the attempt: the future is *pending* until the attempt starts
  (waiting for a worker), *running* once it has, and resolved once it ends.
  ``Future.cancel()`` withdraws an attempt that has not started (and fails on one that has).
- The request's ``timeout`` (seconds, or None) is enforced by the executor: the attempt then
  ends ``TIMEDOUT``.
- ``interrupt`` asks a running attempt to stop and save what it did (it then ends, usually
  ``CANCELED``); ``kill`` ends it now, once the caller's grace ran out. Both withdraw an attempt
  that has not started.
- Futures resolve outside the executor's locks, so a done-callback may call back into it.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from .runs import CellError, NotebookResult, TaskState
from .task_spec import TaskSpec

# A task attempt as the worker reads it; built in one place, Scheduler._request.
Request = TaskSpec


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended; the scheduler numbers it and records it as an Attempt."""

    status: TaskState
    start_ms: int  # when it got a kernel (after ``setup_ms`` waiting for one)
    end_ms: int
    output: str | None = None  # the executed notebook, if one was written
    result: NotebookResult | None = None
    error: CellError | None = None
    setup_ms: int = 0


class Executor(Protocol):
    """Runs task attempts for a scheduler (see the module's docstring for the contract)."""

    def submit(self, request: Request) -> Future[Outcome]:
        """Start the attempt when a slot is free; the future of how it ended."""
        ...

    def interrupt(self, future: Future[Outcome]) -> None:
        """Stop the attempt politely (it saves its notebook); withdraw it if not started."""
        ...

    def kill(self, future: Future[Outcome]) -> None:
        """Stop the attempt now (it ignored the interrupt); withdraw it if not started."""
        ...

    def close(self) -> None:
        """End everything this executor started; attempts not yet started are withdrawn."""
        ...
