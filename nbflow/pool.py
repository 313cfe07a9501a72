"""The worker pool of a plan run: processes that keep a kernel warm for the next task.

Each worker (``python -m nbflow.worker``, its own process group) runs one task at a time in a
kernel it started ahead of need, then warms a fresh one (see :mod:`nbflow.worker`). A worker
that dies, whether killed, crashed or interrupted, costs only the task it was running: the pool
starts another in its place. :meth:`WorkerPool.close` ends every worker, politely first.

Each worker holds a lifeline to this process and a tree tag (see :mod:`nbflow.lifecycle`): if
this process dies, however, the workers cancel their tasks and end their kernels; if a worker
is killed, the pool ends what its kernels had started.

The pool is the scheduler's :class:`nbflow.executor.Executor`: :meth:`WorkerPool.submit` queues
an attempt; one dispatcher thread hands queued attempts to workers as their kernels become warm;
each worker's reader thread (which follows its process's events) resolves the attempt's future
when the worker says it is done, or dies. So nothing waits per task: a thread per worker, one
per pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import kernel_zygote, lifecycle, sandbox
from .cluster import server as cluster_server
from .errors import InputError
from .executor import Outcome, Request
from .results import read_result
from .runs import FAILED, RUNNING, CellError

CLOSE_GRACE_S = 10.0  # how long idle workers get to stop their kernels before they are killed


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class _Job:
    """An attempt submitted to the pool: queued, then on a worker, then resolved."""

    request: Request
    future: Future[Outcome]
    submitted_ms: int
    worker: Worker | None = None
    acquired_ms: int = 0


class Worker:
    """One worker process, as the scheduler sees it."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the pool; its stderr: the reason if it dies
        self.tag = lifecycle.new_tag("worker")
        self._ending = threading.Lock()
        read, self.lifeline = lifecycle.lifeline()  # the write end, closed once the worker has ended
        env = lifecycle.tagged_env(self.tag)
        env[lifecycle.LIFELINE_ENV] = str(read)
        argv = [sys.executable, "-m", "nbflow.worker", json.dumps(options)]
        try:
            self.proc: Any = self._fork(argv, env, read) or subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                start_new_session=True, env=env, pass_fds=(read,),
            )
        except BaseException:
            os.close(self.lifeline)
            raise
        finally:
            os.close(read)
        # Changed under the pool's lock: the process runs; its kernel is warm; a task holds it
        # (``job``: the attempt it runs, when the pool's dispatcher handed it one).
        self.alive = True
        self.warm = False
        self.held = False
        self.job: _Job | None = None
        self.cluster: dict[str, Any] | None = None  # the server its warm kernel attached to, if any
        self.kernel_dir: str | None = None  # its warm kernel's folder (sockets, connection file, log)
        self.kernel_pid: int | None = None
        self.retiring = False  # the pool shrank: it ends once idle and is not replaced

    def _fork(self, argv: list[str], env: dict[str, str], lifeline: int) -> kernel_zygote.ForkedProcess | None:
        """The worker forked by the pool's kernel zygote, where there is one (the cluster's pool
        service): papermill and nbclient already imported, it is ready in milliseconds. None if
        there is none or it cannot (the worker is then started the usual way)."""
        zygote = os.environ.get(kernel_zygote.ZYGOTE_ENV)
        if not zygote:
            return None
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        try:
            forked = kernel_zygote.spawn(zygote, "worker", argv, env, None, {
                "stdin": stdin_read, "stdout": stdout_write, "stderr": self.log.fileno(), "lifeline": lifeline})
        except OSError:
            os.close(stdin_write)
            os.close(stdout_read)
            return None
        finally:
            os.close(stdin_read)
            os.close(stdout_write)
        forked.stdin = os.fdopen(stdin_write, "w", encoding="utf-8")
        forked.stdout = os.fdopen(stdout_read, encoding="utf-8")
        return forked

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def send(self, request: dict[str, Any]) -> bool:
        """Hand the worker a task; False if it is gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return False
        return True

    def death(self) -> str:
        """Why the worker ended: its exit code or signal, and the last line it wrote to stderr."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        lines: list[str] = []
        with contextlib.suppress(ValueError):  # the log is closed once the pool has ended the worker
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
    """``size`` workers, each with a warm kernel. The scheduler's executor (:meth:`submit`,
    :meth:`interrupt`, :meth:`kill`, :meth:`close`); :meth:`acquire` and :meth:`release` hand
    out a worker directly."""

    def __init__(self, size: int, options: dict[str, Any]) -> None:
        self.options = options
        # Decided here, once, before any worker starts: the workers inherit the decision, and a
        # "no sandbox" warning is said once on this process's stderr, not lost in the workers'.
        sandbox.decide(sandbox.layout(Path(options["project"])))
        self._lock = threading.Lock()
        # Notified when a worker becomes ready, an attempt is queued or withdrawn, or the pool closes.
        self._changed = threading.Condition(self._lock)
        self._ready: deque[Worker] = deque()
        self._workers: list[Worker] = []
        self._queue: deque[_Job] = deque()  # submitted attempts waiting for a warm worker
        self._jobs: dict[Future[Outcome], _Job] = {}  # every attempt not yet resolved
        self._closing = False
        # How many workers to keep: a worker that ends is replaced only while there are fewer
        # (see resize: a long-lived pool grows with demand and shrinks when idle).
        self._target = max(size, 1)
        for _ in range(self._target):
            self._start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="nbflow-pool-dispatch", daemon=True)
        self._dispatcher.start()

    def _start(self) -> None:
        with self._lock:
            if self._closing:
                return
            worker = Worker(self.options)
            self._workers.append(worker)
        threading.Thread(target=self._read, args=(worker,), daemon=True).start()

    def _read(self, worker: Worker) -> None:
        """Follow a worker's events until it ends; resolve the attempt it runs when it is done."""
        assert worker.proc.stdout is not None
        for line in worker.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "ready":
                with self._changed:
                    worker.cluster = message.get("cluster")
                    worker.kernel_dir = message.get("kernel_dir")
                    worker.kernel_pid = message.get("kernel_pid")
                    worker.warm = True
                    surplus = not worker.held and self._kept() > self._target and not self._closing
                    if surplus:  # the pool shrank while it ran an attempt
                        worker.warm, worker.held, worker.retiring = False, True, True
                    elif not worker.held:
                        self._ready.append(worker)
                        self._changed.notify_all()
                if surplus:
                    self._retire_later(worker)
            elif message.get("event") == "done" and worker.job is not None:
                self._finish(worker, message.get("summary") or {})
        with self._lock:
            worker.alive = False
            running = worker.job is not None
            replace = not worker.held  # else whoever holds it replaces it on release
        if running:
            self._finish(worker, None)  # it died mid-attempt
        elif replace:
            self._replace(worker)

    def _replace(self, worker: Worker) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(5)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            wanted = self._kept() < self._target
        worker.ended()
        if wanted:
            self._start()

    # -- size -------------------------------------------------------------------------------
    def resize(self, size: int) -> None:
        """Keep ``size`` workers: start the missing ones now; retire idle warm ones beyond it
        (a busy one finishes its attempt and is then not replaced)."""
        size = max(size, 1)
        with self._changed:
            if self._closing:
                return
            self._target = size
            missing = size - self._kept()
            retired: list[Worker] = []
            while missing < 0 and self._ready:
                worker = self._ready.pop()  # the most recently warmed: the others have waited longest
                worker.warm, worker.held, worker.retiring = False, True, True  # never handed out again
                retired.append(worker)
                missing += 1
        for _ in range(max(missing, 0)):
            self._start()
        for worker in retired:
            self._retire_later(worker)

    def _kept(self) -> int:
        """Workers the pool keeps (under its lock): those not being retired."""
        return sum(1 for w in self._workers if not w.retiring)

    def _retire_later(self, worker: Worker) -> None:
        """End a worker held out of the pool (``retiring``): its input closed, it stops its kernel
        and exits."""
        with contextlib.suppress(OSError, ValueError):
            assert worker.proc.stdin is not None
            worker.proc.stdin.close()
        threading.Thread(target=self._retire, args=(worker,), daemon=True).start()

    def _retire(self, worker: Worker) -> None:
        try:
            worker.proc.wait(CLOSE_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.proc.wait()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        worker.ended()

    def counts(self) -> dict[str, int]:
        """Workers by state: ``warm`` (ready for an attempt), ``busy`` (running one), ``warming``
        (starting a kernel), and ``queued`` attempts waiting; ``target``: the size kept."""
        with self._lock:
            busy = sum(1 for w in self._workers if w.job is not None)
            warm = len(self._ready)
            return {"target": self._target, "workers": len(self._workers), "warm": warm, "busy": busy,
                    "warming": max(len(self._workers) - warm - busy, 0), "queued": len(self._queue)}

    def processes(self) -> list[tuple[int, int | None, bool]]:
        """Each worker's pid, its warm kernel's pid, and whether it is warm and idle."""
        with self._lock:
            return [(w.pid, w.kernel_pid, w in self._ready) for w in self._workers]

    # -- the executor ------------------------------------------------------------------------
    def submit(self, request: Request) -> Future[Outcome]:
        """Queue an attempt; it starts on the next worker whose kernel is warm."""
        future: Future[Outcome] = Future()
        job = _Job(request, future, _now_ms())
        future.add_done_callback(self._wake)  # a withdrawn attempt must leave the queue
        with self._changed:
            closing = self._closing
            if not closing:
                self._jobs[future] = job
                self._queue.append(job)
                self._changed.notify_all()
        if closing:
            future.cancel()
        return future

    def _wake(self, _future: Future[Outcome]) -> None:
        with self._changed:
            self._changed.notify_all()

    def _dispatch(self) -> None:
        """The pool's one dispatcher: hands each queued attempt to the next warm worker."""
        while True:
            with self._changed:
                while True:
                    while self._queue and self._queue[0].future.cancelled():
                        dropped = self._queue.popleft().future
                        dropped.set_running_or_notify_cancel()  # acknowledges the withdrawal to its waiters
                        self._jobs.pop(dropped, None)
                    if self._closing:
                        return
                    if self._queue and self._ready:
                        break
                    self._changed.wait()
            worker = self._take_warm()
            if worker is None:
                continue
            with self._changed:
                job = None
                while self._queue and job is None:
                    queued = self._queue.popleft()
                    if queued.future.set_running_or_notify_cancel():  # not withdrawn meanwhile
                        job = queued
                    else:
                        self._jobs.pop(queued.future, None)
                if job is None:  # every queued attempt was withdrawn: still warm, for the next one
                    worker.held, worker.warm = False, True
                    self._ready.appendleft(worker)
                    continue
                worker.job = job
                job.worker, job.acquired_ms = worker, _now_ms()
            # A worker that is gone cannot read it; its reader resolves the attempt at its end.
            worker.send(job.request.to_json())

    def _finish(self, worker: Worker, reply: dict[str, Any] | None) -> None:
        """The attempt ``worker`` ran is over: it said it was done (``reply``), or died (None)."""
        with self._lock:
            job = worker.job
        assert job is not None
        try:
            died = worker.death() if reply is None else None
            self.release(worker)
            outcome = _outcome(job, reply, died)
        except Exception as exc:  # a defect must fail this attempt, never leave it unresolved
            job.future.set_exception(exc)
        else:
            job.future.set_result(outcome)
        finally:
            with self._lock:
                self._jobs.pop(job.future, None)

    def _holder(self, future: Future[Outcome]) -> Worker | None:
        """The worker running the attempt of ``future``; None (and the attempt withdrawn) if it
        has not started, or if it is over."""
        with self._lock:
            job = self._jobs.get(future)
        if job is None or future.cancel():
            return None
        with self._lock:
            return job.worker if job.worker is not None and job.worker.job is job else None

    def interrupt(self, future: Future[Outcome]) -> None:
        """Cancel the attempt's notebook: the worker saves it, stops its kernel and exits."""
        worker = self._holder(future)
        if worker is not None:
            worker.interrupt()

    def kill(self, future: Future[Outcome]) -> None:
        """Kill the worker running the attempt (it ignored the interrupt); the pool replaces it."""
        worker = self._holder(future)
        if worker is not None:
            worker.kill()

    # -- workers handed out directly -----------------------------------------------------------
    def acquire(self, cancelled: Callable[[], bool]) -> Worker | None:
        """A worker whose kernel is warm, held for the caller; None if ``cancelled()`` turns true
        while waiting. (Attempts go through :meth:`submit`; this hands out a worker itself, for
        callers that drive one directly.)"""
        while not cancelled():
            with self._changed:
                if not self._ready:
                    self._changed.wait(0.1)  # ``cancelled`` cannot wake this wait: asked again each 0.1 s
                    continue
            worker = self._take_warm()
            if worker is not None:
                return worker
        return None

    def _take_warm(self) -> Worker | None:
        """The next ready worker whose kernel can take a task now, held (None once none is ready).
        A worker attached to a cluster server that is gone is stopped, and so replaced, on the way."""
        while True:
            with self._changed:
                if not self._ready:
                    return None
                worker = self._ready.popleft()
            if not self._attached_to_live_cluster(worker):  # outside the lock: it reads the state file
                continue
            with self._changed:
                if worker.alive and worker.warm and not worker.held:
                    worker.held, worker.warm = True, False
                    return worker

    def _attached_to_live_cluster(self, worker: Worker) -> bool:
        """False for a kernel attached to a cluster server that died or was replaced since: its
        task would fail at its first Spark call. Such a worker is stopped (and so replaced)."""
        if worker.cluster is None:
            return True
        if cluster_server.is_live(Path(self.options["project"]), worker.cluster):
            return True
        with self._lock:
            worker.warm = False
        worker.interrupt()
        return False

    def release(self, worker: Worker, used: bool = True) -> None:
        """After a task: a worker that ended is replaced; a live one is handed out again once warm
        (at once if it was given no task: its kernel is still the warm one)."""
        with self._changed:
            worker.held = False
            worker.job = None
            if not used:
                worker.warm = True
            replace = not worker.alive
            if worker.alive and worker.warm:
                self._ready.append(worker)
                self._changed.notify_all()
        if replace:
            self._replace(worker)

    def close(self) -> None:
        """End every worker now: a kernel still warming is not waited for. Workers that do not
        stop their kernels and exit within CLOSE_GRACE_S are killed. Queued attempts are withdrawn;
        running ones end as their workers do."""
        with self._changed:
            self._closing = True
            workers = list(self._workers)
            queued = list(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        for job in queued:
            job.future.cancel()
        self._dispatcher.join(5)
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


def _outcome(job: _Job, reply: dict[str, Any] | None, died: str | None) -> Outcome:
    """An attempt's outcome from the notebook it wrote, else from the worker's reply or death."""
    acquired, end = job.acquired_ms, _now_ms()
    setup = acquired - job.submitted_ms
    output = Path(job.request.output_path or "")
    try:
        result = read_result(output)
    except InputError:
        sent = (reply or {}).get("error")
        failure = CellError.from_json(sent) if sent else CellError(None, "WorkerError", str(died))
        return Outcome(FAILED, acquired, end, None, error=failure, setup_ms=setup)
    error = result.error
    if result.status == RUNNING and died:  # the worker died mid-notebook
        error = CellError(None, "WorkerError", died)
    status = result.status if result.status != RUNNING else FAILED
    return Outcome(status, acquired, end, str(output), result, error, setup_ms=setup)
