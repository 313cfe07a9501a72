"""The cluster's pool service: warm kernels that outlive any one command.

``python -m nbflow.pool_service PROJECT [AUTOTERMINATION_MINUTES]``, started beside the project's
cluster server (:func:`nbflow.pool_client.ensure_service`), in a session of its own. It keeps a
:class:`nbflow.pool.WorkerPool` whose workers each hold a fresh kernel with nbflow's runtime
imported and a Spark session attached to the cluster, and runs the notebooks it is sent on them,
one notebook per kernel (every notebook still starts from a clean namespace, as on Databricks).
A Databricks cluster keeps its driver up; this is the local equivalent: attaching a notebook
costs what its cells cost.

Requests come over the Unix socket of :mod:`nbflow.pool_wire` (only the user can open it). A
client that goes away mid-run has its notebook cancelled, then killed; its kernel is replaced.

The pool sizes itself to the machine and to demand (:func:`sizes`): it starts with a few warm
workers, grows while requests wait (to the limit free memory allows), and shrinks back after
``SHRINK_AFTER_S`` without demand. The service stops:

- when the cluster it serves stops or is replaced (it watches the cluster's state file);
- at once, with the server, when the project's folder is deleted;
- after ``AUTOTERMINATION_MINUTES`` without work (0: never), stopping the cluster with it, as
  Databricks' auto-termination does;
- on SIGTERM or SIGINT (``nbflow cluster stop``), or a ``stop`` request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from . import kernel_zygote, lifecycle, pool_wire, sandbox
from .cluster import server as cluster_server
from .cluster.processes import terminate
from .cluster.state import ClusterState, Damaged, log_event, read_state
from .executor import Outcome
from .json_files import write_json
from .kernel_protocol import kernel_python
from .pool import WorkerPool
from .project import cluster_dir, dbfs_root
from .runs import CANCELED, FAILED, CellError
from .task_spec import TaskSpec

DEFAULT_AUTOTERMINATION_MINUTES = 120  # Databricks' default for an all-purpose cluster
SHRINK_AFTER_S = 300.0  # a pool grown for demand keeps its extra workers this long without any
WATCH_INTERVAL_S = 1.0
ZYGOTE_START_TIMEOUT_S = 60.0  # its imports, on a loaded machine
# Memory of one idle worker with its warm kernel (Spark attached) that it does not share with
# the zygote both were forked from: 46-86 MB measured here, with room for a notebook's first
# allocations. sizes() plans with it.
WORKER_MB_GUESS = 120
MEMORY_SHARE = 0.25  # of the memory available when the service starts, for its warm workers
BASE_MAX = 8  # warm workers at rest, at most, however large the machine


def sizes(cores: int | None = None, available_mb: float | None = None) -> tuple[int, int]:
    """The pool's size at rest and its limit under demand: ``NBFLOW_POOL_SIZE`` and
    ``NBFLOW_POOL_MAX``, else from the machine. At rest, four warm workers per core, at least four
    and at most eight (an orchestrating notebook that runs five children at once, itself on a
    warm kernel, finds them warm: growing the pool then would cost the children's start);
    under demand, up to four per core (a Spark notebook mostly waits for the server, a sleeping
    one for nothing). Both within a quarter of the free memory."""
    cores = cores or os.cpu_count() or 1
    if available_mb is None:
        available_mb = psutil.virtual_memory().available / 2**20
    by_memory = max(1, int(available_mb * MEMORY_SHARE // WORKER_MB_GUESS))
    base = min(max(4, 4 * cores), BASE_MAX, by_memory)
    limit = min(max(8, 4 * cores), by_memory)
    base = _env_int("NBFLOW_POOL_SIZE", base)
    limit = max(_env_int("NBFLOW_POOL_MAX", max(limit, base)), base)
    return base, limit


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        return default
    return value if value >= 1 else default


def autotermination_minutes(text: str | None) -> float:
    """``AUTOTERMINATION_MINUTES`` (argument, else ``NBFLOW_AUTOTERMINATION_MINUTES``), 0: never."""
    text = text if text is not None else os.environ.get("NBFLOW_AUTOTERMINATION_MINUTES", "")
    try:
        value = float(text) if text.strip() else DEFAULT_AUTOTERMINATION_MINUTES
    except ValueError:
        value = DEFAULT_AUTOTERMINATION_MINUTES
    return max(value, 0.0)


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """An attempt's outcome on the wire; the client reads the result from the notebook itself."""
    summary = outcome.result.task_summary() if outcome.result is not None else {}
    return {
        **summary,
        "status": outcome.status.value,
        "start_ms": outcome.start_ms,
        "end_ms": outcome.end_ms,
        "setup_ms": outcome.setup_ms,
        "output": outcome.output or summary.get("output"),
        "error": None if outcome.error is None else outcome.error.summary(),
    }


class Zygote:
    """The pool's kernel zygote (:mod:`nbflow.kernel_zygote`): its workers' kernels are forked
    from it (``NBFLOW_KERNEL_ZYGOTE`` in their environment) instead of started from nothing."""

    def __init__(self, proc: subprocess.Popen[str], path: Path) -> None:
        self.proc, self.path = proc, path

    @classmethod
    def start(cls, path: Path) -> Zygote | None:
        """Start it and wait until it has imported; None (kernels start the usual way) if
        ``NBFLOW_ZYGOTE=0``, kernels run on another interpreter, or it fails to start."""
        if os.environ.get("NBFLOW_ZYGOTE", "").strip() == "0" or \
                os.path.realpath(kernel_python()) != os.path.realpath(sys.executable):
            return None
        proc = subprocess.Popen([sys.executable, "-m", "nbflow.kernel_zygote", str(path)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        zygote = cls(proc, path)
        assert proc.stdout is not None
        ready = select.select([proc.stdout], [], [], ZYGOTE_START_TIMEOUT_S)[0] and proc.stdout.readline() == "ready\n"
        if not ready:
            zygote.stop()
            print("nbflow: the kernel zygote did not start; kernels start the usual way", file=sys.stderr, flush=True)
            return None
        os.environ[kernel_zygote.ZYGOTE_ENV] = str(path)  # the workers started from now on use it
        return zygote

    def stop(self) -> None:
        os.environ.pop(kernel_zygote.ZYGOTE_ENV, None)
        with contextlib.suppress(OSError):
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.path.unlink(missing_ok=True)


class PoolService:
    """The service of one project's cluster (see the module's docstring)."""

    def __init__(self, project: Path, cluster: ClusterState, minutes: float) -> None:
        self.project = project
        self.cluster = cluster
        self.minutes = minutes
        self.base, self.limit = sizes()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.stopping = threading.Event()
        self.why = ""
        self._lock = threading.Lock()
        self._running = 0  # notebooks in flight (queued or on a kernel)
        self._last_work = time.monotonic()
        self._last_demand = time.monotonic()
        self.dbfs = str(dbfs_root(project))
        self.python = kernel_python()
        self.socket = pool_wire.socket_file(project)
        self.zygote = Zygote.start(self.socket.with_name(self.socket.stem + ".zygote.sock"))
        self.pool = WorkerPool(self.base, {"project": str(project), "engine": "auto", "spark": True})

    # -- requests ----------------------------------------------------------------------------
    def refusal(self, spec: TaskSpec) -> str | None:
        """Why this service cannot run ``spec`` as asked (the caller then runs it itself)."""
        ctx = spec.context
        if Path(ctx.project_dir).resolve() != self.project:
            return f"another project ({ctx.project_dir})"
        if ctx.python and os.path.realpath(ctx.python) != os.path.realpath(self.python):
            return f"another interpreter ({ctx.python})"
        if ctx.dbfs_root and str(Path(ctx.project_dir, ctx.dbfs_root).resolve()) != self.dbfs:
            return f"another DBFS root ({ctx.dbfs_root})"
        if ctx.engine not in ("auto", self.cluster.engine):
            return f"another cluster engine ({ctx.engine}; the cluster runs {self.cluster.engine})"
        theirs, mine = (ctx.environ or {}).get(sandbox.STATE_ENV), os.environ.get(sandbox.STATE_ENV, "on")
        if theirs is not None and (theirs == "on") != (mine == "on"):
            return f"another sandbox setting ({theirs}; this service's kernels: {mine})"
        if not cluster_server.is_live(self.project, self.cluster.identity):
            # Its kernels are attached to a server that died: the caller's own kernel starts a new one.
            return "its cluster's server is gone"
        return None

    def submit(self, spec: TaskSpec) -> Future[Outcome]:
        with self._lock:
            self._running += 1
            self._last_work = self._last_demand = time.monotonic()
            waiting = self._running
        # Demand: more notebooks at once than workers. A dbutils.notebook.run child may go past
        # the limit: its caller holds a worker while it waits, and callers waiting on children
        # queued behind them would wait for ever.
        # And one that finds no warm worker waits for one: a worker more is kept warm from now
        # on (back-to-back runs outpace the replacement of used kernels).
        limit = self.limit if spec.context.depth == 0 else max(self.limit, waiting)
        counts = self.pool.counts()
        wanted = max(waiting, counts["target"] + (counts["warm"] == 0))
        if wanted > counts["target"] and counts["target"] < limit:
            self.pool.resize(min(wanted, limit))
        future = self.pool.submit(spec)
        future.add_done_callback(self._ended)
        return future

    def _ended(self, _future: Future[Outcome]) -> None:
        with self._lock:
            self._running -= 1
            self._last_work = time.monotonic()

    def reserve(self, workers: int) -> int:
        """Grow to ``workers`` warm workers ahead of a run that will want them; the new size."""
        with self._lock:
            self._last_demand = self._last_work = time.monotonic()
        size = min(max(workers, self.pool.counts()["target"]), self.limit)
        self.pool.resize(size)
        return size

    def touch(self) -> None:
        """Work on the cluster elsewhere (an interactive notebook): auto-termination waits again."""
        with self._lock:
            self._last_work = time.monotonic()

    def status(self, memory: bool = True) -> dict[str, Any]:
        counts = self.pool.counts()
        idle_mb: list[float] = []
        for pid, kernel, idle in self.pool.processes() if memory else ():
            if idle:
                with contextlib.suppress(psutil.Error):
                    procs = [psutil.Process(pid)] + ([psutil.Process(kernel)] if kernel else [])
                    # Resident memory not shared with the zygote the kernel was forked from.
                    idle_mb.append(sum(_private_bytes(p) for p in procs) / 2**20)
        with self._lock:
            idle_s = 0.0 if self._running else time.monotonic() - self._last_work
        return {
            "pid": os.getpid(), "started_at": self.started_at, **counts, "base": self.base, "limit": self.limit,
            "idle_worker_mb": round(statistics.median(idle_mb), 1) if idle_mb else None,
            "idle_s": round(idle_s, 1), "autotermination_minutes": self.minutes,
        }

    # -- life ----------------------------------------------------------------------------------
    def watch(self) -> None:
        """Once a second: the project and the cluster still there, auto-termination, shrinking."""
        cluster_folder = cluster_dir(self.project)
        while not self.stopping.wait(WATCH_INTERVAL_S):
            if not cluster_folder.is_dir():
                # The project was deleted: nothing could stop this cluster any more but us.
                if self.cluster.pid is not None:
                    terminate(self.cluster.pid)
                self.stop("the project's folder was deleted")
                return
            try:
                current = read_state(self.project)
            except Damaged:
                current = self.cluster  # a damaged file is for `nbflow cluster` to report
            if current is None or current.identity != self.cluster.identity:
                self.stop("the cluster stopped")
                return
            with self._lock:
                idle = 0.0 if self._running else time.monotonic() - self._last_work
                calm = time.monotonic() - self._last_demand
            if self.minutes and idle >= self.minutes * 60:
                log_event(self.project, f"auto-termination: no work for {self.minutes:g} minutes; stopping")
                self.stop(f"auto-termination after {self.minutes:g} minutes without work")
                cluster_server.stop(self.project)
                return
            if calm >= SHRINK_AFTER_S and self.pool.counts()["target"] > self.base:
                self.pool.resize(self.base)

    def stop(self, why: str) -> None:
        if not self.stopping.is_set():
            self.why = why
            self.stopping.set()


def _private_bytes(proc: psutil.Process) -> int:
    """Memory only this process holds (its unique set; resident size where that cannot be read)."""
    try:
        return int(proc.memory_full_info().uss)
    except psutil.AccessDenied:
        return int(proc.memory_info().rss)


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: one request."""

    server: _Server

    def handle(self) -> None:
        service = self.server.service
        channel = pool_wire.Channel(self.connection)
        try:
            if not _same_user(self.connection):
                return
            message = channel.receive(30.0)
        except TimeoutError:
            return
        if message is None:
            return
        op = message.get("op")
        if op == "status":
            channel.send(service.status(memory=message.get("memory", True) is not False))
        elif op == "activity":
            service.touch()
            channel.send({"idle_s": 0})
        elif op == "reserve":
            channel.send({"workers": service.reserve(int(message.get("workers") or 0))})
        elif op == "stop":
            channel.send({"stopping": True})
            service.stop("asked to stop")
        elif op == "run":
            self._run(service, channel, message)
        else:
            channel.send({"error": f"unknown request {op!r}"})

    def _run(self, service: PoolService, channel: pool_wire.Channel, message: dict[str, Any]) -> None:
        try:
            spec = TaskSpec.from_json(message.get("spec") or {})
        except Exception as exc:  # a client of another version: it runs the notebook itself
            channel.send({"event": "refused", "why": f"bad request: {exc}"})
            return
        why = service.refusal(spec)
        if why is None and service.stopping.is_set():
            why = f"the pool service is stopping ({service.why})"
        if why is not None:
            channel.send({"event": "refused", "why": why})
            return
        future = service.submit(spec)
        channel.send({"event": "accepted"})
        kill_at: float | None = None
        while True:
            try:
                outcome = future.result(timeout=0.2)
            except FutureTimeout:
                pass
            except CancelledError:  # withdrawn: the pool closed before the notebook started
                channel.send({"event": "withdrawn", "why": service.why or "the pool closed"})
                return
            except Exception as exc:  # a defect: the run failed (never run again by the client)
                now = int(time.time() * 1000)
                failed = Outcome(FAILED, now, now, spec.output_path, None, CellError(None, "WorkerError", str(exc)))
                channel.send({"event": "done", "outcome": outcome_json(failed)})
                return
            else:
                if outcome.status == CANCELED and kill_at is None:
                    # Stopped by the service's own end (its cluster stopped or died), not by its
                    # client: for the caller the task failed, as a task fails when its cluster
                    # terminates on Databricks; a plan retries it if it may.
                    outcome = dataclasses.replace(outcome, status=FAILED, error=CellError(
                        None, "WorkerError", f"the cluster's pool service stopped ({service.why or 'stopped'}) "
                                             "while the notebook ran"))
                channel.send({"event": "done", "outcome": outcome_json(outcome)})
                return
            if kill_at is not None and time.monotonic() >= kill_at:
                service.pool.kill(future)
                kill_at = float("inf")
            if kill_at is None and _readable(self.connection):
                try:
                    request = channel.receive(0.5)
                except TimeoutError:
                    continue
                if request is None or request.get("op") == "cancel":
                    # Asked, or the client is gone (Ctrl-C, killed): stop the notebook, then kill it.
                    service.pool.interrupt(future)
                    kill_at = time.monotonic() + pool_wire.CANCEL_GRACE_S
                elif request.get("op") == "kill":
                    service.pool.kill(future)
                    kill_at = float("inf")


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _same_user(sock: socket.socket) -> bool:
    """The peer runs as this user (the socket's mode already says so; this checks it again)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    service: PoolService


def _write_record(service: PoolService) -> None:
    write_json(pool_wire.record_file(service.project), {
        "pid": os.getpid(), "create_time": psutil.Process().create_time(), "socket": str(service.socket),
        "started_at": service.started_at, "autotermination_minutes": service.minutes,
        "cluster": service.cluster.identity,
    })


def _remove_record(project: Path) -> None:
    record = pool_wire.record_file(project)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(record.read_text(encoding="utf-8")).get("pid") == os.getpid():
            record.unlink()


def serve(project: Path, minutes: float) -> int:
    try:
        cluster = read_state(project)
    except Damaged:
        cluster = None
    if cluster is None:
        print(f"nbflow: no cluster runs for {project}; the pool service has nothing to serve", file=sys.stderr)
        return 1
    lifecycle.interruptible()
    service = PoolService(project, cluster, minutes)
    path = service.socket
    pool_wire.private_socket_folder(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a service that was killed
    old_mask = os.umask(0o177)  # the socket is made 0600: only this user can connect
    try:
        server = _Server(str(path), _Handler)
    finally:
        os.umask(old_mask)
    server.service = service
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop("stopped"))
    accepting = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    accepting.start()
    watching = threading.Thread(target=service.watch, daemon=True)
    watching.start()
    _write_record(service)
    log_event(project, f"pool service started (pid {os.getpid()}, {service.base} warm workers, "
                       f"up to {service.limit}; auto-termination "
                       f"{'off' if not minutes else f'after {minutes:g} minutes'})")
    try:
        while not service.stopping.wait(0.5):
            pass
    finally:
        lifecycle.uninterruptible()
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        service.pool.close()
        if service.zygote is not None:
            service.zygote.stop()
        _remove_record(project)
        log_event(project, f"pool service stopped: {service.why}")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m nbflow.pool_service PROJECT [AUTOTERMINATION_MINUTES]", file=sys.stderr)
        return 2
    return serve(Path(argv[0]).resolve(), autotermination_minutes(argv[1] if len(argv) > 1 else None))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
