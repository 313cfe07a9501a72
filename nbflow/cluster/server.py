"""The life cycle of the project's cluster: start (or adopt), stop, status.

One server per project, bound to 127.0.0.1, started on demand, detached from whoever started it
(it outlives the kernel that started it), and reused until ``stop``. Concurrent starters start one
server (they hold the cluster lock); a starter killed half-way leaves a server the next start
waits for or stops.

Access: only this project's kernels and commands may use the cluster. Sail has no
authentication, so it runs behind :mod:`nbflow.cluster.gate` (a private network namespace, a
Unix socket only this user can open, each connection's user checked); where namespaces are
not available it falls back to plain TCP on 127.0.0.1 and says so (``access``). The JVM engine
uses Spark Connect's own token authentication.

A dead server is found within seconds (see :mod:`nbflow.cluster.attach`); the next start or
attach starts a new server. Garbage in the state file never starts a second server: start adopts
or stops the project's servers it finds by their command lines, and status reports the damage
and the repair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from .. import pool_wire
from ..errors import ClusterStateDamaged, EnvironmentFailure, InputError, NbflowError
from ..lifecycle import OUTLIVES_ENV
from ..project import cluster_dir, cluster_log_file, cluster_state_file, cluster_token_file, warehouse_dir
from . import commands, delta_jars
from .commands import GATE_MODULE, HOST, SPARK_SERVER_CLASS
from .engines import DELTA_CONFS, EngineChoice, check_engine, choose_engine, parse_external
from .processes import (
    CHILDREN,
    accepts,
    alive,
    free_port,
    is_ours,
    last_log_line,
    port_is_free,
    project_servers,
    ready_to_serve,
    server_alive,
    socket_accepts,
    terminate,
)
from .state import (
    ClusterState,
    Damaged,
    locked,
    log_event,
    new_token,
    read_state,
    remove_socket,
    remove_state,
    socket_path,
    write_state,
)

START_TIMEOUT = {"sail": 30.0, "spark": 120.0}
POOL_STOP_TIMEOUT_S = 15.0  # the pool service stops its workers politely within CLOSE_GRACE_S
LOG_ROTATE_BYTES = 5 * 1024 * 1024  # server.log past this is rotated to server.log.1 at the next start
_GATED_ACCESS = ("gate: a Unix socket only this user can open, each connection's user checked; "
                 "Sail's own port is in a private network namespace")
# What earlier versions' gate said; its sessions present the token (see attach).
_LEGACY_GATED_ACCESS = ("gate: a Unix socket only this user can open, every call checked for the cluster token; "
                        "Sail's own port is in a private network namespace")
_TOKEN_ACCESS = "token: Spark Connect token authentication (the token in .nbflow/cluster/token, mode 0600)"


def _adoptable(proc: psutil.Process, project: Path, why: str) -> ClusterState | None:
    """The state of a found server, if nbflow can use it as is (it answers; the token it checks,
    if any, is there)."""
    try:
        cmdline = proc.cmdline()
        started = datetime.fromtimestamp(proc.create_time(), timezone.utc)
    except psutil.Error:
        return None
    args = dict(itertools.pairwise(cmdline))
    common: dict[str, Any] = {
        "pid": proc.pid, "warehouse": str(warehouse_dir(project)), "log": str(cluster_log_file(project)),
        "started_at": started.isoformat(timespec="milliseconds"),
        "reason": f"adopted: found running (pid {proc.pid}) when {why}",
    }
    token = cluster_token_file(project).is_file()
    legacy = "--token-file" in args  # a gate of an earlier version: it checks the token on every call
    if GATE_MODULE in cmdline and "--socket" in args and (token or not legacy):
        socket_file = args["--socket"]
        state = ClusterState(engine="sail", url=f"unix:{socket_file}", port=0, delta=True, socket=socket_file,
                             access=_LEGACY_GATED_ACCESS if legacy else _GATED_ACCESS, **common)
        ready = socket_accepts(socket_file)
    elif GATE_MODULE not in cmdline and any("pysail" in arg for arg in cmdline) and args.get("--port", "").isdigit():
        port = int(args["--port"])
        state = ClusterState(engine="sail", url=f"sc://{HOST}:{port}", port=port, delta=True, socket=None,
                             access="open: adopted a Sail server without the gate; any local process can reach it",
                             **common)
        ready = accepts(port)
    elif any(SPARK_SERVER_CLASS in arg for arg in cmdline) and token:
        ports = [a.split("=", 1)[1] for a in cmdline if a.startswith("spark.connect.grpc.binding.port=")]
        if not ports or not ports[0].isdigit():
            return None
        port = int(ports[0])
        state = ClusterState(engine="spark", url=f"sc://{HOST}:{port}", port=port, delta=DELTA_CONFS[0] in cmdline,
                             socket=None, access=_TOKEN_ACCESS, **common)
        ready = accepts(port)
    else:
        return None
    return state if ready and is_ours(cmdline, state, project) else None


def _take_over(project: Path, why: str) -> ClusterState | None:
    """Adopt the one server of this project found running, or stop what is found; hold the lock.

    Called when the state file is damaged or missing: a server it no longer names would otherwise
    be orphaned, and a second one started beside it.
    """
    servers = project_servers(project)
    adopted = None
    for proc in servers:
        candidate = _adoptable(proc, project, why) if adopted is None else None
        if candidate is not None:
            adopted = candidate
            write_state(project, adopted)
            log_event(project, f"{why}: adopted the running {adopted.engine} server (pid {proc.pid})")
        else:
            log_event(project, f"{why}: stopped a server of this project that could not be adopted (pid {proc.pid})")
            terminate(proc.pid)
    return adopted


class _CannotIsolate(Exception):
    """The gate could not make a private network namespace here; ``args[0]`` says why."""


def _launch(project: Path, choice: EngineChoice, port: int | None) -> ClusterState:
    directory = cluster_dir(project)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the socket (or the token) and the log are the user's alone
    warehouse_dir(project).mkdir(parents=True, exist_ok=True)
    log = cluster_log_file(project)
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    common: dict[str, Any] = {"engine": choice.cluster_engine, "warehouse": str(warehouse_dir(project)),
                              "log": str(log), "started_at": started_at, "delta": choice.delta, "reason": choice.reason}
    open_why = f"--port {port} asks for a TCP port on {HOST}"
    if choice.cluster_engine == "sail" and port is None:
        from .gate import INNER_PORT  # lazy: the gate imports asyncio (25 ms); every command imports us

        socket_file = socket_path(project)
        engine_command, env = commands.server_command(choice, INNER_PORT, project)
        command = commands.gate_command(project, socket_file, engine_command)
        gated = ClusterState(url=f"unix:{socket_file}", pid=None, port=0, access=_GATED_ACCESS,
                             socket=str(socket_file), **common)
        try:
            return _run_server(project, gated, command, env)
        except _CannotIsolate as exc:
            remove_socket(gated)
            open_why = str(exc.args[0])
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise EnvironmentFailure(f"port {port} on {HOST} is already in use by another program: "
                                 "choose another with --port, or leave it out to get a free one")
    command, env = commands.server_command(choice, port, project)
    if choice.cluster_engine == "spark":
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = new_token(project)  # not on the command line: ps shows it to all
        access = _TOKEN_ACCESS
    else:
        access = f"open: {open_why}; any local process can reach it (Sail has no authentication)"
    state = ClusterState(url=f"sc://{HOST}:{port}", pid=None, port=port, access=access, socket=None, **common)
    return _run_server(project, state, command, env)


def _run_server(project: Path, template: ClusterState, command: list[str], env: dict[str, str]) -> ClusterState:
    """Start the server process, record it, and wait until it serves."""
    log = Path(template.log)
    log_event(project, f"starting the {template.engine} cluster ({template.access.split(':')[0]})")
    # A notebook's kernel may start the server, which outlives it: stopping the kernel's tree spares it.
    env = {**env, OUTLIVES_ENV: "1"}
    with open(log, "ab") as out:
        try:
            server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      cwd=cluster_dir(project), env=env, start_new_session=True)
        except OSError as exc:
            raise EnvironmentFailure(f"could not start the {template.engine} cluster: {exc}") from exc
    CHILDREN[server.pid] = server
    state = dataclasses.replace(template, pid=server.pid)
    # Recorded before it is ready, so a starter killed meanwhile leaves a server stop can find.
    write_state(project, state)
    try:
        _wait_ready(state)
    except BaseException:
        terminate(server.pid)
        remove_state(project)
        raise
    return state


def _wait_ready(state: ClusterState) -> None:
    assert state.pid is not None
    child = CHILDREN.get(state.pid)
    timeout = START_TIMEOUT[state.engine]
    deadline = time.monotonic() + timeout
    while not ready_to_serve(state):
        if not alive(state.pid):
            code = None
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = child.wait(1.0)  # it may have died between poll() and psutil's look
            from .gate import CANNOT_ISOLATE  # lazy: as INNER_PORT in start

            if state.socket is not None and code == CANNOT_ISOLATE:
                raise _CannotIsolate(last_log_line(Path(state.log)).removeprefix("nbflow-gate: cannot isolate: "))
            said = "" if code is None else f" (exit code {code})"
            raise EnvironmentFailure(f"the {state.engine} cluster exited while starting{said}: "
                                     f"{last_log_line(Path(state.log))} (log: {state.log})")
        if time.monotonic() > deadline:
            where = state.socket or f"{HOST}:{state.port}"
            raise EnvironmentFailure(f"the {state.engine} cluster did not accept connections on {where} "
                                     f"within {timeout:.0f} s (log: {state.log})")
        time.sleep(0.05)


def _current(project: Path) -> tuple[ClusterState | None, str]:
    """The recorded cluster if it is running, else None and why not. Hold the lock.

    A dead server's state is removed (the next start starts a new one, once); a damaged file is
    removed too, after the servers it may have named are adopted or stopped (see _take_over).
    """
    try:
        state = read_state(project)
    except Damaged as damage:
        why = f"the state file {cluster_state_file(project)} was damaged: {damage.args[0]}"
        adopted = _take_over(project, why)
        if adopted is None:
            remove_state(project)
        return adopted, why
    if state is None:
        return None, "no state file named a server"
    if state.engine == "external" or server_alive(state, project):
        return state, ""
    remove_state(project)
    remove_socket(state)
    why = f"the {state.engine} server (pid {state.pid}) started at {state.started_at} was found dead"
    log_event(project, why)
    return None, why


def _check_compatible(state: ClusterState, cluster_engine: str, port: int | None) -> None:
    wanted = "external" if cluster_engine.startswith("sc://") else cluster_engine
    same_engine = cluster_engine == "auto" or (
        wanted == state.engine and (wanted != "external" or cluster_engine == state.url))
    if not same_engine or (port is not None and port != state.port):
        asked = cluster_engine if port is None else f"{cluster_engine} on port {port}"
        raise InputError(f"a {state.engine} cluster is already running at {state.url}; "
                         f"run `nbflow cluster stop` before starting {asked}")


def _damage_report(project: Path, problem: str) -> str:
    pids = servers(project)
    found = (f"a server of this project still runs (pid {', '.join(map(str, pids))})" if pids
             else "no server of this project runs")
    return (f"the cluster state file {cluster_state_file(project)} is damaged: {problem}; {found}; repair: "
            "`nbflow cluster stop` (stops every server of this project and removes the file), then "
            "`nbflow cluster start` (or just start: it adopts a running server it can use)")


# ---------------------------------------------------------------------------------------------
# The public API


def start(project: Path, cluster_engine: str = "auto", port: int | None = None) -> ClusterState:
    """Start the project's cluster, or return the one already running.

    ``cluster_engine`` is ``auto``, ``sail``, ``spark`` or ``sc://HOST:PORT``; ``port`` defaults to none
    for Sail (it runs behind the gate, see :mod:`nbflow.cluster.gate`; a port asks for plain TCP)
    and to a free one for the JVM. A running cluster is returned as is when it matches the
    request (``auto`` matches any); a different engine or port than the running one raises
    InputError. Raises EnvironmentFailure when the port is taken or the server cannot start.
    """
    project = Path(project).resolve()
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"bad port {port}: expected 1-65535")
    check_engine(cluster_engine)
    with locked(project):
        current, why = _current(project)
        if current is None:
            # Never a second server beside one the state file no longer names.
            current = _take_over(project, why)
        if current is not None:
            _check_compatible(current, cluster_engine, port)
            if current.pid is not None and not ready_to_serve(current):
                # A starter killed half-way can leave a server still starting, or hung.
                try:
                    _wait_ready(current)
                except EnvironmentFailure:
                    terminate(current.pid)
                    remove_state(project)
                    raise
            return current
        choice = choose_engine(cluster_engine)
        if choice.fetch_delta:
            choice = _with_delta(choice, cluster_engine)
        if choice.cluster_engine == "external":
            assert choice.url is not None
            state = ClusterState(
                engine="external", url=choice.url, pid=None, port=parse_external(choice.url),
                warehouse=str(warehouse_dir(project)),
                started_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                log=str(cluster_log_file(project)), delta=False, reason=choice.reason,
                access="external: as the endpoint decides (a ;token= in its URL is passed on)", socket=None,
            )
            write_state(project, state)
            return state
        return _launch(project, choice, port)


def fetch_delta_jars(cluster_engine: str) -> None:
    """Fetch Delta's jars now if ``cluster_engine`` will need them, saying so on stderr, as does a
    failure (the cluster then starts without Delta)."""
    if choose_engine(cluster_engine).fetch_delta:
        try:
            delta_jars.install(delta_jars.jar_dir(), delta_jars.repository(), announce=_say)
        except EnvironmentFailure as exc:
            _say(f"nbflow: the spark engine starts without Delta: {exc}")


def _with_delta(choice: EngineChoice, cluster_engine: str) -> EngineChoice:
    """The JVM engine with Delta's jars, fetched into the cache first (said once, on stderr); without
    Delta, said in one line, when they cannot be fetched (offline, no mirror): plain Spark still runs."""
    folder = delta_jars.jar_dir()
    try:
        delta_jars.install(folder, delta_jars.repository(), announce=_say)
    except EnvironmentFailure as exc:
        _say(f"nbflow: the spark engine starts without Delta: {exc}")
        return dataclasses.replace(choice, reason=f"{choice.reason}; without Delta: {exc}", fetch_delta=False)
    return choose_engine(cluster_engine)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_running(project: Path, cluster_engine: str = "auto") -> ClusterState:
    """The project's cluster, started if needed: what a notebook kernel calls before attaching."""
    return start(project, cluster_engine)


def servers(project: Path) -> list[int]:
    """The pids of this project's servers found running, whatever the state file says."""
    return [proc.pid for proc in project_servers(Path(project).resolve())]


def stop(project: Path) -> bool:
    """Stop the project's cluster (an external one is only forgotten); True if there was one.

    Servers of this project that the state file does not name (a damaged or lost file) are
    stopped too, so that nothing is left running after a stop.
    """
    project = Path(project).resolve()
    with locked(project):
        stop_pool_service(project)
        try:
            state = read_state(project)
        except Damaged as damage:
            log_event(project, f"stop: the state file was damaged ({damage.args[0]})")
            state = None
        stopped = state is not None and state.engine == "external"
        if state is not None and state.pid is not None and server_alive(state, project):
            terminate(state.pid)
            stopped = True
        for proc in project_servers(project):
            log_event(project, f"stop: stopped a server the state file did not name (pid {proc.pid})")
            terminate(proc.pid)
            stopped = True
        if state is not None:
            remove_socket(state)
        remove_state(project)
        with contextlib.suppress(FileNotFoundError):
            cluster_token_file(project).unlink()
        return stopped


def pool_service_record(project: Path) -> dict[str, Any] | None:
    """The cluster's pool service as it recorded itself (:mod:`nbflow.pool_service`), if readable."""
    try:
        record = json.loads(pool_wire.record_file(project).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def pool_service_process(project: Path) -> psutil.Process | None:
    """The project's running pool service, if its record names a live one."""
    record = pool_service_record(project)
    if record is None:
        return None
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 0.01 or \
                proc.status() == psutil.STATUS_ZOMBIE:  # killed, and its parent (gone) never reaped it
            return None
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None
    return proc


def stop_pool_service(project: Path) -> None:
    """Stop the cluster's pool service (:mod:`nbflow.pool_service`) and its warm kernels first:
    they are attached to the server. Not the service itself when it is the one stopping us
    (auto-termination)."""
    proc = pool_service_process(project)
    if proc is not None and proc.pid != os.getpid():
        with contextlib.suppress(psutil.Error):
            proc.terminate()  # it stops its workers and their kernels
            try:
                proc.wait(POOL_STOP_TIMEOUT_S)
            except psutil.TimeoutExpired:
                proc.kill()  # its workers follow: their lifelines were the service's
    pool_wire.record_file(project).unlink(missing_ok=True)


def status(project: Path) -> ClusterState | None:
    """The running cluster, or None; state left by a server that is gone is cleaned up.

    Raises ClusterStateDamaged (one line: the file, what is wrong, the repair) when the state
    file cannot be trusted; status changes nothing then.
    """
    project = Path(project).resolve()
    try:
        state = read_state(project)
    except Damaged as damage:
        raise ClusterStateDamaged(_damage_report(project, str(damage.args[0]))) from None
    if state is not None and (state.engine == "external" or server_alive(state, project)):
        return state
    if state is not None:
        # Clean up only if nobody is starting or stopping right now, and nothing changed since.
        with locked(project, blocking=False) as mine, contextlib.suppress(Damaged):
            if mine and read_state(project) == state:
                remove_state(project)
    return None


def running(project: Path) -> ClusterState | None:
    """The running cluster, or None, also when its state file is damaged (for a caller that
    only needs to know whether to use or stop one; ``nbflow cluster`` reports the damage)."""
    try:
        return status(project)
    except NbflowError:
        return None


def is_live(project: Path, identity: Mapping[str, Any]) -> bool:
    """Whether ``identity`` (see :func:`nbflow.cluster.attach.attached`) is the project's cluster, running now.

    The pool asks this before it hands out a warm kernel: a kernel attached to a server that
    has since died (or been replaced) would fail its task, or hang it.
    """
    project = Path(project).resolve()
    try:
        state = read_state(project)
    except Damaged:
        return False
    return (state is not None and state.identity == dict(identity)
            and (state.engine == "external" or server_alive(state, project)))
