"""The running cluster as recorded: :class:`ClusterState`, its state file, token, lock and event log.

Under ``<project>/.nbflow/cluster/`` (mode 0700; the paths are :mod:`nbflow.project`'s)::

    state.json   the running cluster, versioned and checksummed, written atomically by start,
                 removed by stop
    token        the running cluster's access token (mode 0600, new at every start)
    sc.sock      the gated Sail cluster's Unix socket (mode 0600)
    server.log   the servers' stdout and stderr, one start after another, and nbflow's own events
    lock         flock'ed around start and stop: concurrent starters start one server
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import EnvironmentFailure
from ..project import (
    cluster_dir,
    cluster_lock_file,
    cluster_log_file,
    cluster_socket_file,
    cluster_state_file,
    cluster_token_file,
    project_of_cluster_log,
)

STATE_FORMAT = "nbflow-cluster-state"
STATE_VERSION = 2
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


@dataclass(frozen=True)
class ClusterState:
    """The running cluster as recorded in ``<project>/.nbflow/cluster/state.json``.

    The field names are the state file's keys; ``engine`` is the cluster engine.
    """

    engine: str  # "sail" | "spark" | "external"
    url: str  # sc://127.0.0.1:PORT, unix:SOCKET (gated Sail), or the external endpoint as given
    pid: int | None  # the server's process (and process group) id (the gate's for gated Sail); None for external
    port: int  # the TCP port on 127.0.0.1; 0 for gated Sail (no port outside its namespace)
    warehouse: str  # absolute path of spark.sql.warehouse.dir
    started_at: str  # ISO 8601, UTC
    log: str  # absolute path of the server log
    delta: bool  # whether Delta tables work on this engine
    reason: str  # one line: why this engine was chosen
    access: str  # one line: who can reach the server ("gate: ...", "token: ...", "open: ...", "external: ...")
    socket: str | None  # the gated Sail cluster's Unix socket, else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterState:
        """Read a state mapping; ValueError if a field is missing or has the wrong type."""
        types: dict[str, tuple[type, ...]] = {
            "engine": (str,), "url": (str,), "pid": (int, type(None)), "port": (int,), "warehouse": (str,),
            "started_at": (str,), "log": (str,), "delta": (bool,), "reason": (str,), "access": (str,),
            "socket": (str, type(None)),
        }
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = data.get(field.name)
            if not isinstance(value, types[field.name]) or (field.name in ("pid", "port") and isinstance(value, bool)):
                raise ValueError(f"bad or missing {field.name!r}")
            values[field.name] = value
        return cls(**values)

    @property
    def identity(self) -> dict[str, Any]:
        """What tells this server from a later one (a pid can be reused; a start time cannot)."""
        return {"pid": self.pid, "started_at": self.started_at, "url": self.url}

    @property
    def project(self) -> Path:
        """The project whose cluster this is (its log is that project's cluster log by construction)."""
        return project_of_cluster_log(self.log)


class Damaged(Exception):
    """The state file exists but cannot be trusted; ``args[0]`` says why."""


def socket_path(project: Path) -> Path:
    """The gated cluster's socket: in the cluster folder when the path fits in a sockaddr_un,
    else in a fresh private folder under the temporary directory (removed at stop)."""
    inside = cluster_socket_file(project)
    if len(str(inside)) <= _SOCKET_PATH_MAX:
        return inside
    return Path(tempfile.mkdtemp(prefix="nbflow-sc-")) / "sc.sock"  # mkdtemp makes it 0700


def remove_socket(state: ClusterState) -> None:
    if state.socket is None:
        return
    socket_file = Path(state.socket)
    with contextlib.suppress(FileNotFoundError):
        socket_file.unlink()
    if socket_file.parent.name.startswith("nbflow-sc-"):  # a private folder of its own (see socket_path)
        with contextlib.suppress(OSError):
            socket_file.parent.rmdir()


def _checksum(state: Mapping[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_state(project: Path) -> ClusterState | None:
    """The recorded state; None when there is no file. Raises Damaged when the file is there
    but cannot be trusted: unreadable, not JSON (a half-written file is that), another format or
    version, a checksum that does not match (edited by hand, or garbage), or fields missing."""
    path = cluster_state_file(project)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(f"unreadable ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise Damaged("empty" if not text.strip() else "not valid JSON (half-written or overwritten)") from None
    if not isinstance(data, dict):
        raise Damaged("not a JSON object")
    if data.get("format") != STATE_FORMAT:
        raise Damaged("not an nbflow cluster state (no format field: garbage, or written by an older nbflow)")
    if data.get("version") != STATE_VERSION:
        raise Damaged(f"version {data.get('version')!r}, while this nbflow reads version {STATE_VERSION}")
    state = data.get("state")
    if not isinstance(state, dict) or data.get("checksum") != _checksum(state):
        raise Damaged("checksum mismatch (edited, or damaged on disk)")
    try:
        return ClusterState.from_dict(state)
    except ValueError as exc:
        raise Damaged(str(exc)) from None


def write_state(project: Path, state: ClusterState) -> None:
    """Write the state atomically: a reader sees the old file or the new one, never half of one."""
    path = cluster_state_file(project)
    body = state.to_dict()
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "checksum": _checksum(body), "state": body}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove_state(project: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        cluster_state_file(project).unlink()


def log_event(project: Path, line: str) -> None:
    """A line of nbflow's own in the server log: why a server was restarted, adopted or stopped."""
    with contextlib.suppress(OSError), open(cluster_log_file(project), "a", encoding="utf-8") as handle:
        handle.write(f"[{datetime.now(timezone.utc).isoformat(timespec='seconds')} nbflow] {line}\n")


@contextlib.contextmanager
def locked(project: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the project's cluster lock; yields False when ``blocking`` is off and it is taken.

    flock locks belong to the open file, so threads of one process exclude each other too.
    """
    cluster_dir(project).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(cluster_lock_file(project), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def new_token(project: Path) -> str:
    """A fresh token for the cluster about to start, in a file only this user can read."""
    token = secrets.token_urlsafe(32)
    path = cluster_token_file(project)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token)
    os.replace(tmp, path)
    return token


def read_token(state: ClusterState) -> str:
    path = cluster_token_file(state.project)
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise EnvironmentFailure(f"cannot read the cluster's token {path}: {exc.strerror}; "
                                 "restart the cluster (nbflow cluster stop, then start)") from None
