"""Using the cluster's pool service (:mod:`nbflow.pool_service`) from a command: starting it
beside the cluster, stopping it, and :class:`ServiceExecutor`, the scheduler's executor that
runs a plan's attempts on its warm kernels.

A command that finds the project's cluster running uses the service; when the service cannot
be had (it will not start, it is broken, it refuses the run), the command says so in one line
and runs on kernels of its own, as it would without a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import lifecycle, pool_wire, sandbox
from .cluster import server as cluster_server
from .cluster.state import locked
from .errors import InputError, NbflowError
from .executor import Executor, Outcome, Request
from .project import cluster_log_file
from .results import read_result
from .runs import CANCELED, FAILED, CellError, task_state
from .runtime.secrets import without_secrets

READY_TIMEOUT_S = 30.0
ENV_SWITCH = "NBFLOW_POOL"  # "0": no pool service (every command starts its own kernels)
_warned: set[str] = set()


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip() != "0"


def warn_once(line: str) -> None:
    """One warning line per process and reason."""
    if line not in _warned:
        _warned.add(line)
        print(f"nbflow: warning: {line}", file=sys.stderr, flush=True)


def service_process(project: Path) -> psutil.Process | None:
    """The project's running pool service, if its record names a live one."""
    return cluster_server.pool_service_process(project)


def ensure_service(project: Path, minutes: float | None = None, wait: bool = True) -> bool:
    """Start the pool service of the project's running cluster if it is not running; True once
    it answers (``wait``) or was started. False without a cluster, or with ``NBFLOW_POOL=0``."""
    project = Path(project).resolve()
    if not enabled() or cluster_server.status(project) is None:
        return False
    if service_process(project) is None:
        if sandbox.inside():
            # Started from a kernel's sandbox (runMultiple's process), the service would live in
            # that kernel's namespaces and process tree; a command outside starts it.
            return False
        with locked(project):
            if service_process(project) is None:
                _spawn(project, minutes)
    if not wait:
        return True
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if pool_wire.ask(project, {"op": "status", "memory": False}, timeout=5.0) is not None:
            return True
        if service_process(project) is None and cluster_server.pool_service_record(project) is not None:
            break  # it started and died: its reason is in the cluster log
        time.sleep(0.05)
    return False


def service_available(project: Path, engine: str = "auto", spark: bool = True, minutes: float | None = None) -> bool:
    """Whether a command's notebooks run on the pool service: the project's cluster runs (or is
    started now, for notebooks that use Spark) on the engine asked for, and its service answers
    (started now, with auto-termination after ``minutes``, if it was not running). When the
    service should run but cannot, says so in one line."""
    if not enabled():
        return False
    project = Path(project).resolve()
    try:
        state = cluster_server.status(project)
        if state is None:
            if not spark:
                return False
            state = cluster_server.start(project, engine)
    except NbflowError:
        return False  # the notebooks' own kernels report it, as without a service
    if engine not in ("auto", state.engine):
        return False
    if ensure_service(project, minutes):
        return True
    warn_once(f"the cluster's pool service did not start (see {cluster_log_file(project)}); notebooks run on "
              "kernels started for this command")
    return False


def _spawn(project: Path, minutes: float | None) -> None:
    # Not in the starting command's process tree: the service outlives the command.
    env = {k: v for k, v in os.environ.items()
           if k not in (lifecycle.TREE_ENV, lifecycle.LIFELINE_ENV, lifecycle.OUTLIVES_ENV)}
    command = [sys.executable, "-m", "nbflow.pool_service", str(project)]
    if minutes is not None:
        command.append(f"{minutes:g}")
    pool_wire.record_file(project).unlink(missing_ok=True)
    with open(cluster_log_file(project), "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=project, env=env,
                                start_new_session=True)
    # Recorded now (the service rewrites it once it serves), so a stop meanwhile finds it.
    pool_wire.record_file(project).write_text(json.dumps({
        "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "starting": True}), encoding="utf-8")


def stop_service(project: Path) -> bool:
    """Stop the project's pool service and its workers, leaving the cluster's server; True if one ran."""
    project = Path(project).resolve()
    running = service_process(project) is not None
    cluster_server.stop_pool_service(project)
    return running


def stop_cluster_if_idle(project: Path) -> None:
    """Stop the project's cluster, which the caller (``nbflow lab``, a pytest session) started,
    unless its pool service runs other commands' notebooks: auto-termination stops it later."""
    if cluster_server.running(project) is None:
        return
    busy = pool_wire.ask(project, {"op": "status", "memory": False}, timeout=5.0)
    if busy is not None and (busy.get("busy") or busy.get("queued")):
        return
    with contextlib.suppress(NbflowError):
        cluster_server.stop(project)


def status(project: Path) -> dict[str, Any] | None:
    return pool_wire.ask(Path(project).resolve(), {"op": "status"}, timeout=5.0)


def outcome_from_wire(data: dict[str, Any]) -> Outcome:
    """An attempt's outcome as the service sent it, with the result read from its notebook."""
    output = data.get("output")
    result = None
    if output:
        with contextlib.suppress(InputError):
            result = read_result(output)
    error = CellError.from_json(data["error"]) if data.get("error") else None
    return Outcome(task_state(str(data.get("status") or FAILED.value)), int(data.get("start_ms") or 0),
                   int(data.get("end_ms") or 0), output, result, error, int(data.get("setup_ms") or 0))


@dataclass(eq=False)
class _Call:
    request: Request
    future: Future[Outcome]
    channel: pool_wire.Channel | None = None
    stop: list[str] = field(default_factory=list)  # "cancel" / "kill" asked before the channel was open
    inner: Future[Outcome] | None = None  # run by the fallback executor instead


class ServiceExecutor:
    """The scheduler's :class:`nbflow.executor.Executor` on the pool service: each attempt is
    one connection (a thread waits on it). An attempt the service cannot take runs on
    ``fallback()``'s executor instead, made on first need and closed with this one."""

    def __init__(self, project: Path, width: int, fallback: Any) -> None:
        self.project = project
        self._fallback_factory = fallback
        self._fallback: Executor | None = None
        self._lock = threading.Lock()
        self._calls: dict[Future[Outcome], _Call] = {}
        # As a pool of this run's own would: decided once, its one warning line on this stderr.
        sandbox.decide(sandbox.layout(project))
        pool_wire.ask(project, {"op": "reserve", "workers": width}, timeout=5.0)

    def submit(self, request: Request) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        call = _Call(request, future)
        with self._lock:
            self._calls[future] = call
        future.add_done_callback(self._forget)
        threading.Thread(target=self._run, args=(call,), name="nbflow-service-call", daemon=True).start()
        return future

    def _forget(self, future: Future[Outcome]) -> None:
        with self._lock:
            self._calls.pop(future, None)

    def _run(self, call: _Call) -> None:
        try:
            self._attempt(call)
        except Exception as exc:  # a defect must fail this attempt, never leave it unresolved
            if not call.future.done():
                call.future.set_exception(exc)

    def _attempt(self, call: _Call) -> None:
        channel = pool_wire.connect(self.project)
        why = "it does not answer"
        running = False
        if channel is not None:
            # The attempt's notebook sees this command's environment, as on a kernel of its own.
            context = dataclasses.replace(call.request.context, environ=without_secrets())
            channel.send({"op": "run", "spec": dataclasses.replace(call.request, context=context).to_json()})
            try:
                first = channel.receive(pool_wire.CONNECT_TIMEOUT_S * 5)
            except TimeoutError:
                first = None
            if first is not None and first.get("event") == "accepted":
                if not call.future.set_running_or_notify_cancel():
                    channel.close()  # withdrawn meanwhile: the service cancels what it started
                    return
                running = True
                withdrawn = self._follow(call, channel)
                if withdrawn is None:
                    return
                first = {"why": withdrawn}
            channel.close()
            why = str((first or {}).get("why") or why)
        if not running and not call.future.set_running_or_notify_cancel():
            return  # withdrawn meanwhile
        warn_once(f"the cluster's pool service cannot run this plan's tasks ({why}); they run on kernels "
                  "started for this run")
        with self._lock:
            if self._fallback is None:
                self._fallback = self._fallback_factory()
            executor = self._fallback
        assert executor is not None
        call.inner = executor.submit(call.request)
        call.inner.add_done_callback(lambda inner: _relay(inner, call.future))
        for stop in call.stop:
            (executor.interrupt if stop == "cancel" else executor.kill)(call.inner)

    def _follow(self, call: _Call, channel: pool_wire.Channel) -> str | None:
        """Wait for the attempt's end and resolve its future; or, if the service stopped before
        the attempt started there, why (the attempt then runs on the fallback)."""
        with self._lock:
            call.channel = channel
            asked = list(call.stop)
        for op in asked:
            channel.send({"op": op})
        try:
            while True:
                message = channel.receive()
                if message is None:
                    now = int(time.time() * 1000)
                    call.future.set_result(Outcome(FAILED, now, now, call.request.output_path, None, CellError(
                        None, "WorkerError", "the cluster's pool service stopped while the task ran")))
                    return None
                if message.get("event") == "done":
                    call.future.set_result(outcome_from_wire(message.get("outcome") or {}))
                    return None
                if message.get("event") == "withdrawn":
                    with self._lock:
                        call.channel = None
                    return f"it stopped: {message.get('why')}"
        finally:
            channel.close()

    def _ask(self, future: Future[Outcome], op: str) -> None:
        with self._lock:
            call = self._calls.get(future)
            if call is None:
                return
            channel, inner = call.channel, call.inner
            if channel is None and inner is None:
                call.stop.append(op)
        if channel is None and inner is None:
            future.cancel()  # not started yet: withdrawn
            return
        if channel is not None:
            channel.send({"op": op})
        elif inner is not None and self._fallback is not None:
            (self._fallback.interrupt if op == "cancel" else self._fallback.kill)(inner)

    def interrupt(self, future: Future[Outcome]) -> None:
        self._ask(future, "cancel")

    def kill(self, future: Future[Outcome]) -> None:
        self._ask(future, "kill")

    def close(self) -> None:
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            if call.channel is not None:
                call.channel.send({"op": "cancel"})
            elif call.inner is None:
                call.future.cancel()
        if self._fallback is not None:
            self._fallback.close()


def _relay(inner: Future[Outcome], outer: Future[Outcome]) -> None:
    """The fallback's outcome as the attempt's (``outer`` is running from the hand-over on)."""
    if outer.done():
        return
    if inner.cancelled():  # withdrawn by the fallback's close
        now = int(time.time() * 1000)
        outer.set_result(Outcome(CANCELED, now, now, None, None, CellError(None, "KeyboardInterrupt",
                                                                            "the run was cancelled")))
    elif (failure := inner.exception()) is not None:
        outer.set_exception(failure)
    else:
        outer.set_result(inner.result())
