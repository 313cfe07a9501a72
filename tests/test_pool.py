"""The worker pool on its own: warm workers, replacement of a dead one, nothing left after close."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from nbflow.pool import WorkerPool

pytestmark = pytest.mark.kernel


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_workers_hold_a_warm_kernel_and_a_dead_idle_worker_is_replaced(project: Path) -> None:
    pool = WorkerPool(1, {"project": str(project), "engine": "auto", "spark": False})
    try:
        first = pool.acquire(lambda: False)
        assert first is not None
        kernels = [p for p in _children(first.pid) if "ipykernel_launcher" in " ".join(p.cmdline())]
        assert len(kernels) == 1  # started before any task was given
        pool.release(first)
        first.kill()
        deadline = time.monotonic() + 60
        second = pool.acquire(lambda: time.monotonic() > deadline)
        assert second is not None and second.pid != first.pid
        pool.release(second)
    finally:
        pool.close()
    assert not psutil.pid_exists(second.pid) or psutil.Process(second.pid).status() == psutil.STATUS_ZOMBIE


def test_acquire_gives_up_when_the_run_is_cancelled(project: Path) -> None:
    pool = WorkerPool(1, {"project": str(project), "engine": "auto", "spark": False})
    try:
        held = pool.acquire(lambda: False)
        assert held is not None
        started = time.monotonic()
        assert pool.acquire(lambda: time.monotonic() - started > 0.5) is None  # the only worker is held
        pool.release(held, used=False)  # given no task: its kernel is still warm, handed out again
        again = pool.acquire(lambda: time.monotonic() - started > 5)
        assert again is held
        pool.release(again, used=False)
    finally:
        pool.close()


def test_the_pool_grows_and_shrinks_to_the_size_asked(project: Path) -> None:
    pool = WorkerPool(1, {"project": str(project), "engine": "auto", "spark": False})

    def settled(workers: int, warm: int) -> bool:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            counts = pool.counts()
            if counts["workers"] == workers and counts["warm"] == warm:
                return True
            time.sleep(0.1)
        return False

    try:
        pool.resize(3)
        assert settled(3, 3), pool.counts()
        held = pool.acquire(lambda: False)  # one busy while the pool shrinks
        assert held is not None
        pool.resize(1)
        assert settled(1, 0), pool.counts()  # the two idle ones retired, the busy one kept
        assert pool.counts()["target"] == 1
        pool.release(held, used=False)  # given no task: still the warm one
        assert settled(1, 1), pool.counts()
        kept = {pid for pid, _kernel, _idle in pool.processes()}
        pool.resize(2)
        assert settled(2, 2), pool.counts()
        assert kept <= {pid for pid, _kernel, _idle in pool.processes()}
    finally:
        pool.close()
