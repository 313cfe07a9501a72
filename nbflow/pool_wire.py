"""The wire to the cluster's pool service (:mod:`nbflow.pool_service`): warm kernels that outlive
any one command, leased by ``nbflow run``, plan runs and ``dbutils.notebook.run``.

JSON lines over a Unix socket that only the user can open: the socket is made 0600 in a 0700
folder, and a client talks only to a socket its own user owns with no access for others. A
client sends one request line and reads events:

- ``{"op": "run", "spec": <TaskSpec JSON>}`` → ``{"event": "accepted"}`` then, once the notebook
  ran, ``{"event": "done", "outcome": {...}}``; or ``{"event": "refused", "why": ...}`` (the
  service cannot run it as asked: another interpreter, DBFS root or engine; the caller runs it
  itself) or ``{"event": "withdrawn", "why": ...}`` (the service stopped before the notebook
  started). While it runs, the client may send ``{"op": "cancel"}`` (the notebook is stopped
  and saved) or ``{"op": "kill"}``; a client that goes away counts as a cancel, then a kill.
- ``{"op": "status"}`` → the pool's sizes, memory and idle time (``"memory": false`` skips the
  memory, which reads every idle kernel's page map: tens of milliseconds).
- ``{"op": "reserve", "workers": N}`` → the pool grows to N warm kernels (within its limit).
- ``{"op": "activity"}`` → ``{"idle_s": 0}``: work done on the cluster outside the service's runs
  (an interactive notebook's cells) postpones auto-termination as a run does.
- ``{"op": "stop"}`` → the service stops (the cluster's server is left as it is).

Standard library only: a notebook's kernel imports this for ``dbutils.notebook.run``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from .project import cluster_dir

SOCKET_NAME = "pool.sock"
RECORD_NAME = "pool.json"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
CONNECT_TIMEOUT_S = 2.0
# How long a cancelled notebook gets to stop and save before it is killed.
CANCEL_GRACE_S = 15.0


def record_file(project: str | Path) -> Path:
    """The running service's record: pid, socket, start time, autotermination (JSON)."""
    return cluster_dir(project) / RECORD_NAME


def socket_file(project: str | Path) -> Path:
    """The service's socket: in the cluster folder when the path fits in a sockaddr_un, else in
    a private folder of the user's under the temporary directory, named after the project."""
    inside = cluster_dir(project) / SOCKET_NAME
    if len(str(inside)) <= _SOCKET_PATH_MAX:
        return inside
    digest = hashlib.sha256(str(Path(project).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"nbflow-pool-{os.getuid()}" / f"{digest}.sock"


def private_socket_folder(path: Path) -> None:
    """Make the socket's folder, the user's alone (0700); refuse one another user owns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.parent.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path.parent} belongs to another user")
    os.chmod(path.parent, 0o700)


class Channel:
    """One connection: JSON lines both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> bool:
        """Send one message; False if the other end is gone."""
        try:
            self.sock.sendall(json.dumps(message, default=str).encode() + b"\n")
        except OSError:
            return False
        return True

    def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message; None at the end of the connection. ``TimeoutError`` if none comes
        within ``timeout`` seconds (None: wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    raise TimeoutError
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def connect(project: str | Path, timeout: float = CONNECT_TIMEOUT_S) -> Channel | None:
    """A channel to the project's pool service; None if none runs (or the socket is not the
    user's own, private one: nothing is sent to a socket someone else could have made)."""
    path = socket_file(project)
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return Channel(sock)


def ask(project: str | Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any] | None:
    """One request, one answer (``status``, ``reserve``, ``activity``, ``stop``); None if no service answers."""
    channel = connect(project)
    if channel is None:
        return None
    try:
        if not channel.send(message):
            return None
        return channel.receive(timeout)
    except TimeoutError:
        return None
    finally:
        channel.close()


class Lost(Exception):
    """The service went away while a notebook of ours ran there."""


def run(project: str | Path, spec: dict[str, Any], backstop: float | None = None) -> dict[str, Any] | None:
    """Run a notebook (``spec``: a TaskSpec's JSON) on a warm kernel of the project's service.

    Returns the ``done`` event's outcome, or None when the service is not there, refused the run
    or stopped before it started (the caller then runs the notebook itself). An interrupt of the
    caller (Ctrl-C, an interrupted cell) cancels the notebook, waits up to ``CANCEL_GRACE_S``
    for it to stop and save, kills it otherwise, and is raised again. ``backstop``: seconds after
    which the run is cancelled the same way, and ``{"status": "TIMEDOUT"}`` returned. Raises
    :class:`Lost` if the service dies mid-run.
    """
    channel = connect(project)
    if channel is None:
        return None
    try:
        if not channel.send({"op": "run", "spec": spec}):
            return None
        first = channel.receive(CONNECT_TIMEOUT_S * 5)
        if first is None or first.get("event") != "accepted":
            return None
        deadline = None if backstop is None else time.monotonic() + backstop
        try:
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    message = channel.receive(left)
                except TimeoutError:
                    _stop(channel)
                    return {"status": "TIMEDOUT", "output": spec.get("output_path"), "error": None}
                if message is None:
                    raise Lost("the cluster's pool service stopped while the notebook ran")
                if message.get("event") == "done":
                    outcome: dict[str, Any] = message.get("outcome") or {}
                    return outcome
                if message.get("event") == "withdrawn":
                    return None  # the service stopped before the notebook started: the caller runs it
        except KeyboardInterrupt:
            _stop(channel)
            raise
    except TimeoutError:
        return None
    finally:
        channel.close()


def _stop(channel: Channel) -> None:
    """Cancel the running notebook; kill it if it has not stopped within the grace."""
    channel.send({"op": "cancel"})
    deadline = time.monotonic() + CANCEL_GRACE_S
    while True:
        try:
            message = channel.receive(max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            channel.send({"op": "kill"})
            with contextlib.suppress(TimeoutError):
                channel.receive(5.0)
            return
        except KeyboardInterrupt:  # a second Ctrl-C: now
            channel.send({"op": "kill"})
            return
        if message is None or message.get("event") == "done":
            return
