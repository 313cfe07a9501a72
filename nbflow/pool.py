"""The worker pool of a plan run: processes that keep a kernel warm for the next task.

Each worker (``python -m nbflow.worker``, its own process group) runs one task at a time in a
kernel it started ahead of need, then warms a fresh one (see :mod:`nbflow.worker`). A worker
that dies, whether killed, crashed or interrupted, costs only the task it was running: the pool
starts another in its place. :meth:`WorkerPool.close` ends every worker, politely first.

Each worker holds a lifeline to this process and a tree tag (see :mod:`nbflow.lifecycle`): if
this process dies, however, the workers cancel their tasks and end their kernels; if a worker
is killed, the pool ends what its kernels had started.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import lifecycle, sandbox

CLOSE_GRACE_S = 10.0  # how long idle workers get to stop their kernels before they are killed


class Worker:
    """One worker process, as the scheduler sees it."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the pool; its stderr: the reason if it dies
        self.tag = lifecycle.new_tag("worker")
        self._ending = threading.Lock()
        read, self.lifeline = lifecycle.lifeline()  # the write end, closed once the worker has ended
        env = lifecycle.tagged_env(self.tag)
        env[lifecycle.LIFELINE_ENV] = str(read)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nbflow.worker", json.dumps(options)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True,
                env=env, pass_fds=(read,),
            )
        except BaseException:
            os.close(self.lifeline)
            raise
        finally:
            os.close(read)
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        # Changed under the pool's lock: the process runs; its kernel is warm; a task holds it.
        self.alive = True
        self.warm = False
        self.held = False
        self.cluster: dict[str, Any] | None = None  # the server its warm kernel attached to, if any
        self.kernel_dir: str | None = None  # its warm kernel's folder (sockets, connection file, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, request: dict[str, Any]) -> bool:
        """Hand the worker a task; False if it is gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return False
        return True

    def wait(self) -> dict[str, Any] | None:
        """The task's summary once done, or None if the worker died before saying so."""
        return self.replies.get()

    def death(self) -> str:
        """Why the worker ended: its exit code or signal, and the last line it wrote to stderr."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.log.seek(0)
        lines = self.log.read().decode("utf-8", "replace").strip().splitlines()
        return f"the worker process died ({how})" + (f": {lines[-1]}" if lines else "")

    def interrupt(self) -> None:
        """Ask the worker to stop: its notebook is cancelled and saved, its kernel stopped."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        """A worker that ignored the interrupt: kill it, what runs in its process group, and its
        tree (its kernels run in sessions of their own, and what their notebooks started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        lifecycle.kill_tree(self.tag, grace=0)

    def ended(self) -> None:
        """After the worker's exit: end what it left running, and let go of its lifeline and log.
        Called once by whichever comes first of the pool's replacement and its close."""
        with self._ending:
            if self.lifeline < 0:
                return
            lifecycle.kill_tree(self.tag)
            # A worker that died (killed, crashed) could not remove its kernel's folder; a worker
            # that ended normally already has, and nbflow names these folders itself.
            if self.kernel_dir is not None and Path(self.kernel_dir).name.startswith("nbflow-kernel-"):
                shutil.rmtree(self.kernel_dir, ignore_errors=True)
            os.close(self.lifeline)
            self.lifeline = -1
            self.log.close()


class WorkerPool:
    """``size`` workers, each with a warm kernel; :meth:`acquire` hands out a ready one."""

    def __init__(self, size: int, options: dict[str, Any]) -> None:
        self.options = options
        # Decided here, once, before any worker starts: the workers inherit the decision, and a
        # "no sandbox" warning is said once on this process's stderr, not lost in the workers'.
        sandbox.decide(sandbox.layout(Path(options["project"])))
        self._ready: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[Worker] = []
        self._closing = False
        for _ in range(max(size, 1)):
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._closing:
                return
            worker = Worker(self.options)
            self._workers.append(worker)
        threading.Thread(target=self._read, args=(worker,), daemon=True).start()

    def _read(self, worker: Worker) -> None:
        """Follow a worker's events until it ends."""
        assert worker.proc.stdout is not None
        for line in worker.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "ready":
                with self._lock:
                    worker.cluster = message.get("cluster")
                    worker.kernel_dir = message.get("kernel_dir")
                    worker.warm = True
                    if not worker.held:
                        self._ready.put(worker)
            elif message.get("event") == "done":
                worker.replies.put(message.get("summary") or {})
        worker.replies.put(None)  # wakes a task waiting on this worker
        with self._lock:
            worker.alive = False
            replace = not worker.held  # else the task holding it replaces it on release
        if replace:
            self._replace(worker)

    def _replace(self, worker: Worker) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(5)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        worker.ended()
        self._start()

    def acquire(self, cancelled: Callable[[], bool]) -> Worker | None:
        """A worker whose kernel is warm; None if ``cancelled()`` turns true while waiting."""
        while not cancelled():
            try:
                worker = self._ready.get(timeout=0.1)
            except queue.Empty:
                continue
            if not self._attached_to_live_cluster(worker):
                continue
            with self._lock:
                if worker.alive and worker.warm and not worker.held:
                    worker.held, worker.warm = True, False
                    return worker
        return None

    def _attached_to_live_cluster(self, worker: Worker) -> bool:
        """False for a kernel attached to a cluster server that died or was replaced since: its
        task would fail at its first Spark call. Such a worker is stopped (and so replaced)."""
        if worker.cluster is None:
            return True
        from .cluster import server as cluster_server

        if cluster_server.is_live(Path(self.options["project"]), worker.cluster):
            return True
        with self._lock:
            worker.warm = False
        worker.interrupt()
        return False

    def release(self, worker: Worker, used: bool = True) -> None:
        """After a task: a worker that ended is replaced; a live one is handed out again once warm
        (at once if it was given no task: its kernel is still the warm one)."""
        with self._lock:
            worker.held = False
            if not used:
                worker.warm = True
            replace = not worker.alive
            if worker.alive and worker.warm:
                self._ready.put(worker)
        if replace:
            self._replace(worker)

    def close(self) -> None:
        """End every worker now: a kernel still warming is not waited for. Workers that do not
        stop their kernels and exit within CLOSE_GRACE_S are killed."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                assert worker.proc.stdin is not None
                worker.proc.stdin.close()
            worker.interrupt()
        deadline = time.monotonic() + CLOSE_GRACE_S
        for worker in workers:
            try:
                worker.proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.proc.wait()
            worker.ended()
