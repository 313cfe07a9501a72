"""The local cluster: one Spark Connect server per project, that every notebook kernel attaches to.

A Databricks all-purpose cluster is one Spark driver that many notebooks share; nbflow mirrors it
with one Spark Connect server per project, bound to 127.0.0.1, started on demand, detached from
whoever started it, and reused until ``stop``. Its files live under ``<project>/.nbflow/``::

    cluster/             mode 0700
    cluster/state.json   the running cluster (ClusterState), versioned and checksummed, written
                         atomically by start, removed by stop
    cluster/token        the running cluster's access token (mode 0600, new at every start)
    cluster/sc.sock      the gated Sail cluster's Unix socket (mode 0600)
    cluster/server.log   the servers' stdout and stderr, one start after another (rotated to
                         server.log.1 past LOG_ROTATE_BYTES)
    cluster/lock         flock'ed around start and stop: concurrent starters start one server
    warehouse/           spark.sql.warehouse.dir

Access: only this project's kernels and commands may use the cluster. Sail has no
authentication, so it runs behind :mod:`nbflow.cluster_gate` (a private network namespace, a
Unix socket only this user can open, and the token checked on every call); where namespaces are
not available it falls back to plain TCP on 127.0.0.1 and says so (``access``). The JVM engine
uses Spark Connect's own token authentication.

A dead server is found within seconds: sessions retry an unanswered call only while the server
process lives, then raise :class:`ClusterDied` naming the log; the next start or attach starts a
new server. Garbage in the state file never starts a second server: start adopts or stops the
project's servers it finds by their command lines, and status reports the damage and the repair.

Engines: ``sail`` (pysail, a Rust engine, Delta built in), ``spark`` (the JVM Spark Connect
server shipped in the pyspark wheel, Delta when delta-spark's jars are at hand), an external
``sc://host:port`` endpoint (recorded, never started or stopped), and ``auto``: ``spark`` with
Delta when the jars are found locally, else ``sail``. ``auto`` decides from local files only.

This module is imported inside notebook kernels: at module level it imports only the standard
library, psutil and nbflow.errors; pyspark is imported by :func:`attach` alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from .catalog import (
    DEFAULT_CATALOG,
    LEGACY_CATALOG,
    PLAIN_NAME,
    SPARE_CATALOG_PREFIX,
    SPARE_CATALOGS,
    SYSTEM_CATALOG,
    Registry,
)
from .cluster_gate import CANNOT_ISOLATE, INNER_PORT
from .errors import CatalogDamaged, ClusterDied, ClusterStateDamaged, EnvironmentFailure, InputError
from .lifecycle import OUTLIVES_ENV
from .project import dbfs_root, volumes_root, workspace_root
from .runtime.secrets import without_secrets
from .sandbox import SWITCH_ENV

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "ClusterDied",
    "ClusterState",
    "ClusterStateDamaged",
    "EngineChoice",
    "attach",
    "attached",
    "choose_engine",
    "delta_spark_args",
    "ensure_running",
    "find_delta_jars",
    "is_live",
    "start",
    "status",
    "stop",
]

HOST = "127.0.0.1"
ENGINES = ("auto", "sail", "spark")
START_TIMEOUT = {"sail": 30.0, "spark": 120.0}
STOP_TIMEOUT = 15.0
STATE_FORMAT = "nbflow-cluster-state"
STATE_VERSION = 2
LOG_ROTATE_BYTES = 5 * 1024 * 1024
# An unanswered call (UNAVAILABLE) is retried while the server process lives, for this long at
# most; pyspark's own policy retries for 10 minutes and more, which is how a dead cluster hung runs.
UNAVAILABLE_BUDGET_S = 15.0
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
# Used with NBFLOW_DELTA_MAVEN=1 unless NBFLOW_DELTA_VERSION names another; it must be a Delta
# release built for the pyspark in use (Spark 4.2). Not verified here: no Maven access.
DELTA_MAVEN_VERSION = "4.4.1"
DELTA_CONFS = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.connect.extensions.relation.classes=org.apache.spark.sql.connect.delta.DeltaRelationPlugin",
    "spark.connect.extensions.command.classes=org.apache.spark.sql.connect.delta.DeltaCommandPlugin",
)
_SPARK_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# Delta artifacts for Spark 4.2 / Scala 2.13: plain names (delta-spark_2.13-4.x.y.jar), names with
# the Spark suffix Delta uses since 4.1 (delta-spark_4.2_2.13-...), and Ivy cache names
# (io.delta_delta-spark_2.13-...). delta-connect-common is taken along when present.
_DELTA_ARTIFACTS = {
    "delta-spark": r"delta-spark_(?:4\.2_)?2\.13",
    "delta-storage": r"delta-storage",
    "delta-connect-server": r"delta-connect-server_(?:4\.2_)?2\.13",
}
_DELTA_OPTIONAL = {"delta-connect-common": r"delta-connect-common_(?:4\.2_)?2\.13"}
_VERSION = r"(4\.\d+\.\d+(?:[-.][A-Za-z0-9.]+)?)"
_EXTERNAL_URL = re.compile(r"^sc://(?P<host>\[[^\]/]+\]|[^:/;\[\]]+):(?P<port>\d{1,5})(?P<rest>/.*)?$")

# Servers this process started, so their exit status is collected (no zombies in a kernel).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ClusterState:
    """The running cluster as recorded in ``<project>/.nbflow/cluster/state.json``."""

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


class _Damaged(Exception):
    """The state file exists but cannot be trusted; ``args[0]`` says why."""


@dataclass(frozen=True)
class EngineChoice:
    """What ``start`` will run: the engine, whether Delta works on it, and why it was chosen."""

    engine: str  # "sail" | "spark" | "external"
    delta: bool
    reason: str
    spark_args: tuple[str, ...] = ()  # extra spark-submit arguments (Delta), engine "spark" only
    url: str | None = None  # engine "external" only


# ---------------------------------------------------------------------------------------------
# Paths and the state file


def cluster_dir(project: Path) -> Path:
    return Path(project).resolve() / ".nbflow" / "cluster"


def state_path(project: Path) -> Path:
    return cluster_dir(project) / "state.json"


def log_path(project: Path) -> Path:
    return cluster_dir(project) / "server.log"


def warehouse_dir(project: Path) -> Path:
    return Path(project).resolve() / ".nbflow" / "warehouse"


def token_path(project: Path) -> Path:
    return cluster_dir(project) / "token"


def _socket_path(project: Path) -> Path:
    """The gated cluster's socket: in the cluster folder when the path fits in a sockaddr_un,
    else in a fresh private folder under the temporary directory (removed at stop)."""
    inside = cluster_dir(project) / "sc.sock"
    if len(str(inside)) <= _SOCKET_PATH_MAX:
        return inside
    import tempfile

    return Path(tempfile.mkdtemp(prefix="nbflow-sc-")) / "sc.sock"  # mkdtemp makes it 0700


def _checksum(state: Mapping[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _read_state(project: Path) -> ClusterState | None:
    """The recorded state; None when there is no file. Raises _Damaged when the file is there
    but cannot be trusted: unreadable, not JSON (a half-written file is that), another format or
    version, a checksum that does not match (edited by hand, or garbage), or fields missing."""
    path = state_path(project)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Damaged(f"unreadable ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise _Damaged("empty" if not text.strip() else "not valid JSON (half-written or overwritten)") from None
    if not isinstance(data, dict):
        raise _Damaged("not a JSON object")
    if data.get("format") != STATE_FORMAT:
        raise _Damaged("not an nbflow cluster state (no format field: garbage, or written by an older nbflow)")
    if data.get("version") != STATE_VERSION:
        raise _Damaged(f"version {data.get('version')!r}, while this nbflow reads version {STATE_VERSION}")
    state = data.get("state")
    if not isinstance(state, dict) or data.get("checksum") != _checksum(state):
        raise _Damaged("checksum mismatch (edited, or damaged on disk)")
    try:
        return ClusterState.from_dict(state)
    except ValueError as exc:
        raise _Damaged(str(exc)) from None


def _write_state(project: Path, state: ClusterState) -> None:
    """Write the state atomically: a reader sees the old file or the new one, never half of one."""
    path = state_path(project)
    body = state.to_dict()
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "checksum": _checksum(body), "state": body}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove_state(project: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(project).unlink()


def _log_event(project: Path, line: str) -> None:
    """A line of nbflow's own in the server log: why a server was restarted, adopted or stopped."""
    with contextlib.suppress(OSError), open(log_path(project), "a", encoding="utf-8") as handle:
        handle.write(f"[{datetime.now(timezone.utc).isoformat(timespec='seconds')} nbflow] {line}\n")


@contextlib.contextmanager
def _locked(project: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the project's cluster lock; yields False when ``blocking`` is off and it is taken.

    flock locks belong to the open file, so threads of one process exclude each other too.
    """
    directory = cluster_dir(project)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Choosing the engine


def find_delta_jars(env: Mapping[str, str] | None = None, home: Path | None = None) -> tuple[list[Path] | None, str]:
    """Delta's jars for the JVM engine, found on local disk only, and where (or why not).

    Looks in the directory ``NBFLOW_DELTA_JARS`` names when it is set (and only there), else in
    the Ivy caches ``~/.ivy2.5.2/jars`` and ``~/.ivy2/jars``. Needs delta-spark_2.13,
    delta-storage and delta-connect-server_2.13 of one 4.x version (the newest complete one wins).
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    named = env.get("NBFLOW_DELTA_JARS")
    folders = [Path(named).expanduser()] if named else [home / ".ivy2.5.2" / "jars", home / ".ivy2" / "jars"]
    problems = []
    for folder in folders:
        jars, problem = _delta_jars_in(folder)
        if jars:
            return jars, str(folder)
        problems.append(problem)
    if named:
        return None, f"NBFLOW_DELTA_JARS={named}: {problems[0]}"
    return None, f"NBFLOW_DELTA_JARS unset, none in {' or '.join(str(f) for f in folders)}"


def _delta_jars_in(folder: Path) -> tuple[list[Path] | None, str]:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".jar"))
    except OSError:
        return None, "not a readable directory"
    found: dict[str, dict[str, Path]] = {}  # version -> artifact -> jar
    for artifact, pattern in {**_DELTA_ARTIFACTS, **_DELTA_OPTIONAL}.items():
        regex = re.compile(rf"^(?:io\.delta_)?{pattern}-{_VERSION}\.jar$")
        for name in names:
            match = regex.match(name)
            if match:
                found.setdefault(match.group(1), {})[artifact] = folder / name
    complete = [v for v, jars in found.items() if all(a in jars for a in _DELTA_ARTIFACTS)]
    if not complete:
        return None, f"no complete set of {', '.join(_DELTA_ARTIFACTS)} 4.x jars (Scala 2.13) of one version"
    best = max(complete, key=_version_key)
    return [found[best][a] for a in (*_DELTA_ARTIFACTS, *_DELTA_OPTIONAL) if a in found[best]], ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def delta_spark_args(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[str]:
    """spark-submit arguments that give the JVM Spark Connect server Delta; [] when Delta is not at hand.

    With ``NBFLOW_DELTA_MAVEN=1``: ``--packages`` (Spark resolves the jars from Maven Central into
    its Ivy cache, so a later offline ``auto`` finds them). Otherwise ``--jars`` with the jars
    :func:`find_delta_jars` finds. Either way, the Delta session extension, catalog and Delta
    Connect plugins are set with ``--conf``.
    """
    env = os.environ if env is None else env
    if env.get("NBFLOW_DELTA_MAVEN") == "1":
        version = env.get("NBFLOW_DELTA_VERSION") or DELTA_MAVEN_VERSION
        jars_args = ["--packages", f"io.delta:delta-spark_2.13:{version},io.delta:delta-connect-server_2.13:{version}"]
    else:
        jars, _ = find_delta_jars(env, home)
        if not jars:
            return []
        jars_args = ["--jars", ",".join(str(jar) for jar in jars)]
    confs = [arg for conf in DELTA_CONFS for arg in ("--conf", conf)]
    return [*jars_args, *confs]


def choose_engine(engine: str = "auto", env: Mapping[str, str] | None = None, home: Path | None = None) -> EngineChoice:
    """Resolve ``auto``/``sail``/``spark``/``sc://host:port`` without touching the network."""
    env = os.environ if env is None else env
    if engine.startswith("sc://"):
        _parse_external(engine)
        return EngineChoice("external", False, f"external Spark Connect endpoint {engine}: nbflow neither starts "
                            "nor stops it, and does not know whether it has Delta", url=engine)
    if engine not in ENGINES:
        raise InputError(f"unknown cluster engine {engine!r}: use auto, sail, spark or sc://HOST:PORT")
    if engine == "sail":
        return EngineChoice("sail", True, "engine sail requested (Delta built in)")
    args = tuple(delta_spark_args(env, home))
    if env.get("NBFLOW_DELTA_MAVEN") == "1":
        where = "Delta from Maven (NBFLOW_DELTA_MAVEN=1)"
    else:
        jars, where = find_delta_jars(env, home)
        where = f"Delta jars from {where}" if jars else f"no Delta jars ({where})"
    if engine == "spark":
        return EngineChoice("spark", bool(args), f"engine spark requested; {where}", spark_args=args)
    if args:
        return EngineChoice("spark", True, f"auto: {where}, so the JVM Spark engine with Delta", spark_args=args)
    return EngineChoice("sail", True, f"auto: {where}, so sail (Delta built in)")


def _parse_external(url: str) -> int:
    match = _EXTERNAL_URL.match(url)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise InputError(f"bad Spark Connect URL {url!r}: expected sc://HOST:PORT")
    return int(match.group("port"))


# ---------------------------------------------------------------------------------------------
# Processes and ports


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


def _ready_to_serve(state: ClusterState) -> bool:
    return _socket_accepts(state.socket) if state.socket is not None else _accepts(state.port)


_GATE_MODULE = "nbflow.cluster_gate"
_GATED_ACCESS = ("gate: a Unix socket only this user can open, every call checked for the cluster token; "
                 "Sail's own port is in a private network namespace")
_TOKEN_ACCESS = "token: Spark Connect token authentication (the token in .nbflow/cluster/token, mode 0600)"


def _is_ours(cmdline: Sequence[str], state: ClusterState, project: Path) -> bool:
    """Whether a command line is this project's server for ``state`` (and not a reused pid)."""
    pairs = set(itertools.pairwise(cmdline))
    if state.engine == "sail" and state.socket is not None:
        return (_GATE_MODULE in cmdline and ("--cluster-dir", str(cluster_dir(project))) in pairs
                and ("--socket", state.socket) in pairs)
    if state.engine == "sail":
        return (_GATE_MODULE not in cmdline and any("pysail" in arg for arg in cmdline)
                and ("--port", str(state.port)) in pairs and ("-C", str(cluster_dir(project))) in pairs)
    if state.engine == "spark":
        return (any(_SPARK_SERVER_CLASS in arg for arg in cmdline)
                and f"spark.connect.grpc.binding.port={state.port}" in cmdline
                and f"spark.sql.warehouse.dir={state.warehouse}" in cmdline)
    return False


def _project_servers(project: Path) -> list[psutil.Process]:
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
                or (warehouse in cmdline and any(_SPARK_SERVER_CLASS in arg for arg in cmdline))):
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == proc.pid:
                found.append(proc)
    return found


def _adoptable(proc: psutil.Process, project: Path, why: str) -> ClusterState | None:
    """The state of a found server, if nbflow can use it as is (it answers, its token is there)."""
    try:
        cmdline = proc.cmdline()
        started = datetime.fromtimestamp(proc.create_time(), timezone.utc)
    except psutil.Error:
        return None
    args = dict(itertools.pairwise(cmdline))
    common: dict[str, Any] = {
        "pid": proc.pid, "warehouse": str(warehouse_dir(project)), "log": str(log_path(project)),
        "started_at": started.isoformat(timespec="milliseconds"),
        "reason": f"adopted: found running (pid {proc.pid}) when {why}",
    }
    token = token_path(project).is_file()
    if _GATE_MODULE in cmdline and "--socket" in args and token:
        socket_file = args["--socket"]
        state = ClusterState(engine="sail", url=f"unix:{socket_file}", port=0, delta=True, socket=socket_file,
                             access=_GATED_ACCESS, **common)
        ready = _socket_accepts(socket_file)
    elif _GATE_MODULE not in cmdline and any("pysail" in arg for arg in cmdline) and args.get("--port", "").isdigit():
        port = int(args["--port"])
        state = ClusterState(engine="sail", url=f"sc://{HOST}:{port}", port=port, delta=True, socket=None,
                             access="open: adopted a Sail server without the gate; any local process can reach it",
                             **common)
        ready = _accepts(port)
    elif any(_SPARK_SERVER_CLASS in arg for arg in cmdline) and token:
        ports = [a.split("=", 1)[1] for a in cmdline if a.startswith("spark.connect.grpc.binding.port=")]
        if not ports or not ports[0].isdigit():
            return None
        port = int(ports[0])
        state = ClusterState(engine="spark", url=f"sc://{HOST}:{port}", port=port, delta=DELTA_CONFS[0] in cmdline,
                             socket=None, access=_TOKEN_ACCESS, **common)
        ready = _accepts(port)
    else:
        return None
    return state if ready and _is_ours(cmdline, state, project) else None


def _take_over(project: Path, why: str) -> ClusterState | None:
    """Adopt the one server of this project found running, or stop what is found; hold the lock.

    Called when the state file is damaged or missing: a server it no longer names would otherwise
    be orphaned, and a second one started beside it.
    """
    servers = _project_servers(project)
    adopted = None
    for proc in servers:
        candidate = _adoptable(proc, project, why) if adopted is None else None
        if candidate is not None:
            adopted = candidate
            _write_state(project, adopted)
            _log_event(project, f"{why}: adopted the running {adopted.engine} server (pid {proc.pid})")
        else:
            _log_event(project, f"{why}: stopped a server of this project that could not be adopted (pid {proc.pid})")
            _terminate(proc.pid)
    return adopted


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead; ours are reaped on the way)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _server_alive(state: ClusterState, project: Path) -> bool:
    if state.pid is None or not _alive(state.pid):
        return False
    try:
        return _is_ours(psutil.Process(state.pid).cmdline(), state, project)
    except psutil.Error:
        return False


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group, SIGKILL it after STOP_TIMEOUT seconds."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        _signal_group(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            break
    # Helpers the server started (Python workers of the JVM) share its group; while any is
    # left the group id cannot be reused, so this reaches only them.
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _last_log_line(path: Path) -> str:
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


# ---------------------------------------------------------------------------------------------
# Starting the server


def sail_catalog_list(project: Path) -> str:
    """Sail's ``SAIL_CATALOG__LIST``: one in-memory catalog per Unity Catalog catalog, and spares."""
    try:
        wanted = [name for name in Registry(project).catalogs() if name not in (LEGACY_CATALOG, SYSTEM_CATALOG)]
    except CatalogDamaged:
        wanted = [DEFAULT_CATALOG]  # the notebook that touches a table reports the damage
    # Only plain names go into Sail's configuration; any other is served by a spare catalog.
    names = ["spark_catalog", *(n for n in wanted if PLAIN_NAME.fullmatch(n)),
             *(f"{SPARE_CATALOG_PREFIX}{i}" for i in range(1, SPARE_CATALOGS + 1))]
    return "[" + ", ".join(f'{{type="memory", name="{n}", initial_database=["default"]}}' for n in names) + "]"


def _pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentFailure(f"the spark engine needs pyspark, which {sys.executable} does not have")
    return Path(next(iter(spec.submodule_search_locations)))


def _server_command(choice: EngineChoice, port: int, project: Path) -> tuple[list[str], dict[str, str]]:
    # The server runs users' Python UDFs: it gets no secrets (the runtime reads them, redacted).
    env = without_secrets()
    if choice.engine == "sail":
        if importlib.util.find_spec("pysail") is None:
            raise EnvironmentFailure(f"the sail engine needs pysail, which {sys.executable} does not have")
        command = [sys.executable, "-m", "pysail", "spark", "server", "--ip", HOST, "--port", str(port),
                   "-C", str(cluster_dir(project))]
        # Unity Catalog's catalogs as Sail's own (in-memory) catalogs: `spark_catalog` (Spark's
        # name; nbflow maps `hive_metastore` onto it), `main`, every catalog the project's
        # registry holds, and spare catalogs that stand for catalogs created while this server
        # runs (Sail cannot add a catalog at run time; see nbflow.runtime.unity).
        env.setdefault("SAIL_CATALOG__LIST", sail_catalog_list(project))
        env.setdefault("SAIL_CATALOG__DEFAULT_CATALOG", DEFAULT_CATALOG)
        return command, env
    home = _pyspark_home()
    submit = home / "bin" / "spark-submit"
    if not submit.is_file():
        raise EnvironmentFailure(f"the spark engine needs {submit}, which this pyspark does not ship")
    if not env.get("JAVA_HOME") and shutil.which("java") is None:
        raise EnvironmentFailure("the spark engine needs Java 17 or later: java is not on PATH and JAVA_HOME is unset")
    confs = [
        f"spark.connect.grpc.binding.address={HOST}",
        f"spark.connect.grpc.binding.port={port}",
        f"spark.sql.warehouse.dir={warehouse_dir(project)}",
        "spark.ui.enabled=false",  # the UI would listen on every interface
        f"spark.driver.bindAddress={HOST}",
        f"spark.driver.host={HOST}",
    ]
    command = [str(submit), "--master", "local[*]", "--class", _SPARK_SERVER_CLASS, "--name", "nbflow",
               *(arg for conf in confs for arg in ("--conf", conf)), *choice.spark_args]
    # The wheel's own Spark, whatever SPARK_HOME the user has; Python UDFs on this interpreter.
    env.update(SPARK_HOME=str(home), PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP=HOST)
    return command, env


class _CannotIsolate(Exception):
    """The gate could not make a private network namespace here; ``args[0]`` says why."""


def _new_token(project: Path) -> str:
    """A fresh token for the cluster about to start, in a file only this user can read."""
    token = secrets.token_urlsafe(32)
    path = token_path(project)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token)
    os.replace(tmp, path)
    return token


def _read_token(state: ClusterState) -> str:
    try:
        return token_path(_project_of(state)).read_text(encoding="ascii").strip()
    except OSError as exc:
        raise EnvironmentFailure(f"cannot read the cluster's token {token_path(_project_of(state))}: "
                                 f"{exc.strerror}; restart the cluster (nbflow cluster stop, then start)") from None


def _project_of(state: ClusterState) -> Path:
    # The log is <project>/.nbflow/cluster/server.log by construction (see log_path).
    return Path(state.log).parents[2]


def _launch(project: Path, choice: EngineChoice, port: int | None) -> ClusterState:
    directory = cluster_dir(project)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the token, the socket and the log are the user's alone
    warehouse_dir(project).mkdir(parents=True, exist_ok=True)
    log = log_path(project)
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    token = _new_token(project)
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    common: dict[str, Any] = {"engine": choice.engine, "warehouse": str(warehouse_dir(project)), "log": str(log),
                              "started_at": started_at, "delta": choice.delta, "reason": choice.reason}
    open_why = f"--port {port} asks for a TCP port on {HOST}"
    if choice.engine == "sail" and port is None:
        socket_file = _socket_path(project)
        engine_command, env = _server_command(choice, INNER_PORT, project)
        command = _gate_command(project, socket_file, engine_command)
        gated = ClusterState(url=f"unix:{socket_file}", pid=None, port=0, access=_GATED_ACCESS,
                             socket=str(socket_file), **common)
        try:
            return _run_server(project, gated, command, env)
        except _CannotIsolate as exc:
            _remove_socket(gated)
            open_why = str(exc.args[0])
    if port is None:
        port = _free_port()
    elif not _port_is_free(port):
        raise EnvironmentFailure(f"port {port} on {HOST} is already in use by another program: "
                                 "choose another with --port, or leave it out to get a free one")
    command, env = _server_command(choice, port, project)
    if choice.engine == "spark":
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token  # not on the command line: ps shows that to everyone
        access = _TOKEN_ACCESS
    else:
        access = f"open: {open_why}; any local process can reach it (Sail has no authentication)"
    state = ClusterState(url=f"sc://{HOST}:{port}", pid=None, port=port, access=access, socket=None, **common)
    return _run_server(project, state, command, env)


def _gate_command(project: Path, socket_file: Path, engine_command: list[str]) -> list[str]:
    # The project's folders the gate maps on /Volumes, /dbfs and /Workspace for Sail (as kernels see them).
    folders = ["--volumes", str(volumes_root(project)), "--dbfs", str(dbfs_root(project)),
               "--workspace", str(workspace_root(project))]
    if os.environ.get(SWITCH_ENV, "").strip() == "0":
        folders = []
    return [sys.executable, "-m", _GATE_MODULE, "--cluster-dir", str(cluster_dir(project)),
            "--socket", str(socket_file), *folders, "--", *engine_command]


def _run_server(project: Path, template: ClusterState, command: list[str], env: dict[str, str]) -> ClusterState:
    """Start the server process, record it, and wait until it serves."""
    log = Path(template.log)
    _log_event(project, f"starting the {template.engine} cluster ({template.access.split(':')[0]})")
    # A notebook's kernel may start the server, which outlives it: stopping the kernel's tree spares it.
    env = {**env, OUTLIVES_ENV: "1"}
    with open(log, "ab") as out:
        try:
            server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      cwd=cluster_dir(project), env=env, start_new_session=True)
        except OSError as exc:
            raise EnvironmentFailure(f"could not start the {template.engine} cluster: {exc}") from exc
    _CHILDREN[server.pid] = server
    state = dataclasses.replace(template, pid=server.pid)
    # Recorded before it is ready, so a starter killed meanwhile leaves a server stop can find.
    _write_state(project, state)
    try:
        _wait_ready(state)
    except BaseException:
        _terminate(server.pid)
        _remove_state(project)
        raise
    return state


def _wait_ready(state: ClusterState) -> None:
    assert state.pid is not None
    child = _CHILDREN.get(state.pid)
    timeout = START_TIMEOUT[state.engine]
    deadline = time.monotonic() + timeout
    while not _ready_to_serve(state):
        if not _alive(state.pid):
            code = None
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = child.wait(1.0)  # it may have died between poll() and psutil's look
            if state.socket is not None and code == CANNOT_ISOLATE:
                raise _CannotIsolate(_last_log_line(Path(state.log)).removeprefix("nbflow-gate: cannot isolate: "))
            said = "" if code is None else f" (exit code {code})"
            raise EnvironmentFailure(f"the {state.engine} cluster exited while starting{said}: "
                                     f"{_last_log_line(Path(state.log))} (log: {state.log})")
        if time.monotonic() > deadline:
            where = state.socket or f"{HOST}:{state.port}"
            raise EnvironmentFailure(f"the {state.engine} cluster did not accept connections on {where} "
                                     f"within {timeout:.0f} s (log: {state.log})")
        time.sleep(0.05)


def _remove_socket(state: ClusterState) -> None:
    if state.socket is None:
        return
    socket_file = Path(state.socket)
    with contextlib.suppress(FileNotFoundError):
        socket_file.unlink()
    if socket_file.parent.name.startswith("nbflow-sc-"):  # a private folder of its own (see _socket_path)
        with contextlib.suppress(OSError):
            socket_file.parent.rmdir()


def _current(project: Path) -> tuple[ClusterState | None, str]:
    """The recorded cluster if it is running, else None and why not. Hold the lock.

    A dead server's state is removed (the next start starts a new one, once); a damaged file is
    removed too, after the servers it may have named are adopted or stopped (see _take_over).
    """
    try:
        state = _read_state(project)
    except _Damaged as damage:
        why = f"the state file {state_path(project)} was damaged: {damage.args[0]}"
        adopted = _take_over(project, why)
        if adopted is None:
            _remove_state(project)
        return adopted, why
    if state is None:
        return None, "no state file named a server"
    if state.engine == "external" or _server_alive(state, project):
        return state, ""
    _remove_state(project)
    _remove_socket(state)
    why = f"the {state.engine} server (pid {state.pid}) started at {state.started_at} was found dead"
    _log_event(project, why)
    return None, why


def _check_compatible(state: ClusterState, engine: str, port: int | None) -> None:
    wanted = "external" if engine.startswith("sc://") else engine
    same_engine = engine == "auto" or (wanted == state.engine and (wanted != "external" or engine == state.url))
    if not same_engine or (port is not None and port != state.port):
        asked = engine if port is None else f"{engine} on port {port}"
        raise InputError(f"a {state.engine} cluster is already running at {state.url}; "
                         f"run `nbflow cluster stop` before starting {asked}")


def _damage_report(project: Path, problem: str) -> str:
    pids = servers(project)
    found = (f"a server of this project still runs (pid {', '.join(map(str, pids))})" if pids
             else "no server of this project runs")
    return (f"the cluster state file {state_path(project)} is damaged: {problem}; {found}; repair: "
            "`nbflow cluster stop` (stops every server of this project and removes the file), then "
            "`nbflow cluster start` (or just start: it adopts a running server it can use)")


# ---------------------------------------------------------------------------------------------
# The public API


def start(project: Path, engine: str = "auto", port: int | None = None) -> ClusterState:
    """Start the project's cluster, or return the one already running.

    ``engine`` is ``auto``, ``sail``, ``spark`` or ``sc://HOST:PORT``; ``port`` defaults to none
    for Sail (it runs behind the gate, see :mod:`nbflow.cluster_gate`; a port asks for plain TCP)
    and to a free one for the JVM. A running cluster is returned as is when it matches the
    request (``auto`` matches any); a different engine or port than the running one raises
    InputError. Raises EnvironmentFailure when the port is taken or the server cannot start.
    """
    project = Path(project).resolve()
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"bad port {port}: expected 1-65535")
    if engine.startswith("sc://"):
        _parse_external(engine)
    elif engine not in ENGINES:
        raise InputError(f"unknown cluster engine {engine!r}: use auto, sail, spark or sc://HOST:PORT")
    with _locked(project):
        current, why = _current(project)
        if current is None:
            # Never a second server beside one the state file no longer names.
            current = _take_over(project, why)
        if current is not None:
            _check_compatible(current, engine, port)
            if current.pid is not None and not _ready_to_serve(current):
                # A starter killed half-way can leave a server still starting, or hung.
                try:
                    _wait_ready(current)
                except EnvironmentFailure:
                    _terminate(current.pid)
                    _remove_state(project)
                    raise
            return current
        choice = choose_engine(engine)
        if choice.engine == "external":
            assert choice.url is not None
            state = ClusterState(
                engine="external", url=choice.url, pid=None, port=_parse_external(choice.url),
                warehouse=str(warehouse_dir(project)),
                started_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                log=str(log_path(project)), delta=False, reason=choice.reason,
                access="external: as the endpoint decides (a ;token= in its URL is passed on)", socket=None,
            )
            _write_state(project, state)
            return state
        return _launch(project, choice, port)


def ensure_running(project: Path, engine: str = "auto") -> ClusterState:
    """The project's cluster, started if needed: what a notebook kernel calls before attaching."""
    return start(project, engine)


def servers(project: Path) -> list[int]:
    """The pids of this project's servers found running, whatever the state file says."""
    return [proc.pid for proc in _project_servers(Path(project).resolve())]


def stop(project: Path) -> bool:
    """Stop the project's cluster (an external one is only forgotten); True if there was one.

    Servers of this project that the state file does not name (a damaged or lost file) are
    stopped too, so that nothing is left running after a stop.
    """
    project = Path(project).resolve()
    with _locked(project):
        try:
            state = _read_state(project)
        except _Damaged as damage:
            _log_event(project, f"stop: the state file was damaged ({damage.args[0]})")
            state = None
        stopped = state is not None and state.engine == "external"
        if state is not None and state.pid is not None and _server_alive(state, project):
            _terminate(state.pid)
            stopped = True
        for proc in _project_servers(project):
            _log_event(project, f"stop: stopped a server the state file did not name (pid {proc.pid})")
            _terminate(proc.pid)
            stopped = True
        if state is not None:
            _remove_socket(state)
        _remove_state(project)
        with contextlib.suppress(FileNotFoundError):
            token_path(project).unlink()
        return stopped


def status(project: Path) -> ClusterState | None:
    """The running cluster, or None; state left by a server that is gone is cleaned up.

    Raises ClusterStateDamaged (one line: the file, what is wrong, the repair) when the state
    file cannot be trusted; status changes nothing then.
    """
    project = Path(project).resolve()
    try:
        state = _read_state(project)
    except _Damaged as damage:
        raise ClusterStateDamaged(_damage_report(project, str(damage.args[0]))) from None
    if state is not None and (state.engine == "external" or _server_alive(state, project)):
        return state
    if state is not None:
        # Clean up only if nobody is starting or stopping right now, and nothing changed since.
        with _locked(project, blocking=False) as mine, contextlib.suppress(_Damaged):
            if mine and _read_state(project) == state:
                _remove_state(project)
    return None


def is_live(project: Path, identity: Mapping[str, Any]) -> bool:
    """Whether ``identity`` (see :func:`attached`) is the project's cluster, running now.

    The pool asks this before it hands out a warm kernel: a kernel attached to a server that
    has since died (or been replaced) would fail its task, or hang it.
    """
    project = Path(project).resolve()
    try:
        state = _read_state(project)
    except _Damaged:
        return False
    return (state is not None and state.identity == dict(identity)
            and (state.engine == "external" or _server_alive(state, project)))


def session_url(url: str, session_id: str) -> str:
    """``url`` with a ``session_id`` parameter: one Spark Connect session per attach."""
    if "/;" in url:
        return f"{url};session_id={session_id}"
    return f"{url.rstrip('/')}/;session_id={session_id}"


# The server this process last attached a session to (see attached()).
_ATTACHED: dict[str, Any] | None = None


def attached() -> dict[str, Any] | None:
    """The identity (:attr:`ClusterState.identity`) of the server this process last attached to.

    A warm kernel reports it, so that the pool hands the kernel out only while that server is
    the project's live one (see :func:`is_live`).
    """
    return None if _ATTACHED is None else dict(_ATTACHED)


def died_message(state: ClusterState) -> str:
    """The one line a task fails with when the cluster under its session dies."""
    return f"the local cluster ({state.engine}, pid {state.pid}) died; its log: {state.log}"


def attach(state: ClusterState) -> SparkSession:
    """A new Spark Connect session on the cluster, with its own session id.

    The session reaches the server as its access requires (the gate's socket, or TCP, with the
    cluster's token where there is one), and retries a call the server does not answer only
    while the server's process lives, for UNAVAILABLE_BUDGET_S at most: then ClusterDied, one
    line naming the server and its log, instead of pyspark's retries of ten minutes and more.
    On Sail, ``spark.sql.warehouse.dir`` is set on the session (Sail's catalog is per session);
    the JVM server has it as a static conf already, and an external cluster has its own.
    """
    import uuid

    from pyspark.sql.connect.session import SparkSession as ConnectSession

    global _ATTACHED
    session_id = str(uuid.uuid4())
    # What pyspark's own builder sets for a remote session: pyspark.sql.functions and others
    # choose their Spark Connect implementation by it (without it F.col asserts a SparkContext).
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    if state.engine == "external":
        spark = ConnectSession.builder.remote(session_url(state.url, session_id)).create()
    else:
        spark = ConnectSession.builder.channelBuilder(_channel_builder(state, session_id)).create()
    # Before the first call: a session built with options would call the server under
    # pyspark's default policy, and hang on a dead one.
    spark.client.set_retry_policies([_retry_policy(state)])
    if state.engine == "sail":
        spark.conf.set("spark.sql.warehouse.dir", state.warehouse)
    _ATTACHED = state.identity
    return spark  # type: ignore[return-value]  # pyspark types the Connect session apart from the classic one


def _channel_builder(state: ClusterState, session_id: str) -> Any:
    """How a session reaches this cluster: the gate's socket or TCP, with the token if any."""
    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    token = _read_token(state) if state.access.startswith(("gate:", "token:")) else None
    target = f"unix:{state.socket}" if state.socket is not None else f"{HOST}:{state.port}"
    kind = grpc.LocalConnectionType.UDS if state.socket is not None else grpc.LocalConnectionType.LOCAL_TCP

    class LocalChannel(DefaultChannelBuilder):
        def toChannel(self) -> grpc.Channel:
            if token is None:
                return self._insecure_channel(target)
            # Local credentials: no TLS on a connection that never leaves the machine, which
            # gRPC requires before it sends a bearer token.
            credentials = grpc.composite_channel_credentials(
                grpc.local_channel_credentials(kind), grpc.access_token_call_credentials(token))
            return self._secure_channel(target, credentials)

    return LocalChannel(f"sc://localhost/;session_id={session_id}")


def _retry_policy(state: ClusterState) -> Any:
    """pyspark's retry policy, bounded: UNAVAILABLE is retried while the server process lives,
    for UNAVAILABLE_BUDGET_S at most; then, or at once if the process is gone, ClusterDied."""
    import grpc
    from pyspark.sql.connect.client.retries import DefaultPolicy, RetryPolicyState

    project = _project_of(state)

    class Attempts(RetryPolicyState):
        def __init__(self, policy: Any) -> None:
            super().__init__(policy)
            self._first_unavailable: float | None = None

        def next_attempt(self, exception: BaseException | None = None) -> int | None:
            if isinstance(exception, grpc.RpcError) and exception.code() == grpc.StatusCode.UNAVAILABLE:
                if state.pid is not None and not _server_alive(state, project):
                    raise ClusterDied(died_message(state)) from None
                now = time.monotonic()
                if self._first_unavailable is None:
                    self._first_unavailable = now
                elif now - self._first_unavailable > UNAVAILABLE_BUDGET_S:
                    who = f"{state.engine}, pid {state.pid}" if state.pid is not None else state.url
                    raise ClusterDied(f"the local cluster ({who}) did not answer for {UNAVAILABLE_BUDGET_S:.0f} s; "
                                      f"its log: {state.log}") from None
            wait: int | None = super().next_attempt(exception)
            return wait

    class Bounded(DefaultPolicy):
        def __init__(self) -> None:
            super().__init__(max_retries=40, initial_backoff=50, backoff_multiplier=2.0, max_backoff=1000,
                             max_server_retry_delay=10_000)

        def to_state(self) -> Any:
            return Attempts(self)

    return Bounded()
