"""The cluster's servers as processes: found by their command lines, alive or not, stopped.

A server is known by its command line (see :mod:`nbflow.cluster.commands`), never by a pid alone:
a pid can be reused, and a state file can be lost or damaged while its server runs on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from ..project import cluster_dir, warehouse_dir
from .commands import GATE_MODULE, HOST, SPARK_SERVER_CLASS
from .state import ClusterState

STOP_TIMEOUT = 15.0

# Servers this process started, so their exit status is collected (no zombies in a kernel).
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


def ready_to_serve(state: ClusterState) -> bool:
    return socket_accepts(state.socket) if state.socket is not None else accepts(state.port)


def is_ours(cmdline: Sequence[str], state: ClusterState, project: Path) -> bool:
    """Whether a command line is this project's server for ``state`` (and not a reused pid)."""
    pairs = set(itertools.pairwise(cmdline))
    if state.engine == "sail" and state.socket is not None:
        return (GATE_MODULE in cmdline and ("--cluster-dir", str(cluster_dir(project))) in pairs
                and ("--socket", state.socket) in pairs)
    if state.engine == "sail":
        return (GATE_MODULE not in cmdline and any("pysail" in arg for arg in cmdline)
                and ("--port", str(state.port)) in pairs and ("-C", str(cluster_dir(project))) in pairs)
    if state.engine == "spark":
        return (any(SPARK_SERVER_CLASS in arg for arg in cmdline)
                and f"spark.connect.grpc.binding.port={state.port}" in cmdline
                and f"spark.sql.warehouse.dir={state.warehouse}" in cmdline)
    return False


def project_servers(project: Path) -> list[psutil.Process]:
    """Live servers of this project, found by their command lines (whatever the state file says).

    Only process group leaders count: nbflow starts each server in a session of its own, and the
    Sail server behind a gate (a member of the gate's group) is the gate's, not a second server.
    """
    directory, warehouse = str(cluster_dir(project)), f"spark.sql.warehouse.dir={warehouse_dir(project)}"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or not cmdline:
            continue
        pairs = set(itertools.pairwise(cmdline))
        if not (("--cluster-dir", directory) in pairs or ("-C", directory) in pairs
                or (warehouse in cmdline and any(SPARK_SERVER_CLASS in arg for arg in cmdline))):
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == proc.pid:
                found.append(proc)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead; ours are reaped on the way)."""
    child = CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del CHILDREN[pid]
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def server_alive(state: ClusterState, project: Path) -> bool:
    """Whether the server ``state`` names runs, and is still that server (not a reused pid)."""
    if state.pid is None or not alive(state.pid):
        return False
    try:
        return is_ours(psutil.Process(state.pid).cmdline(), state, project)
    except psutil.Error:
        return False


def terminate(pid: int) -> None:
    """SIGTERM the server's process group, SIGKILL it after STOP_TIMEOUT seconds."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        _signal_group(pid, sig)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            break
    # Helpers the server started (Python workers of the JVM) share its group; while any is
    # left the group id cannot be reused, so this reaches only them.
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def last_log_line(path: Path) -> str:
    """The server log's last line (what a server that died said last), shortened."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [line for line in lines if line]
    if not lines:
        return "(empty log)"
    return lines[-1] if len(lines[-1]) <= 300 else lines[-1][:297] + "..."
