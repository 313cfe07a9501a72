"""The local cluster: one Spark Connect server per project, that every notebook kernel attaches to.

A Databricks all-purpose cluster is one Spark driver that many notebooks share; nbflow mirrors it
with one Spark Connect server per project, bound to 127.0.0.1, started on demand, detached from
whoever started it, and reused until ``stop``. Its files live under ``<project>/.nbflow/``::

    cluster/state.json   the running cluster (ClusterState), written by start, removed by stop
    cluster/server.log   the server's stdout and stderr (the previous one is kept as server.log.1)
    cluster/lock         flock'ed around start and stop: concurrent starters start one server
    warehouse/           spark.sql.warehouse.dir

Engines: ``sail`` (pysail, a Rust engine, Delta built in), ``spark`` (the JVM Spark Connect
server shipped in the pyspark wheel, Delta when delta-spark's jars are at hand), an external
``sc://host:port`` endpoint (recorded, never started or stopped), and ``auto``: ``spark`` with
Delta when the jars are found locally, else ``sail``. ``auto`` decides from local files only.

This module is imported inside notebook kernels: at module level it imports only the standard
library, psutil and nbflow.errors; pyspark is imported by :func:`attach` alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from .errors import EnvironmentFailure, InputError
from .lifecycle import OUTLIVES_ENV

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "ClusterState",
    "EngineChoice",
    "attach",
    "choose_engine",
    "delta_spark_args",
    "ensure_running",
    "find_delta_jars",
    "start",
    "status",
    "stop",
]

HOST = "127.0.0.1"
ENGINES = ("auto", "sail", "spark")
START_TIMEOUT = {"sail": 30.0, "spark": 120.0}
STOP_TIMEOUT = 15.0
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
    url: str  # sc://127.0.0.1:PORT (or the external endpoint as given)
    pid: int | None  # the server's process (and process group) id; None for external
    port: int
    warehouse: str  # absolute path of spark.sql.warehouse.dir
    started_at: str  # ISO 8601, UTC
    log: str  # absolute path of the server log
    delta: bool  # whether Delta tables work on this engine
    reason: str  # one line: why this engine was chosen

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterState:
        """Read a state mapping; ValueError if a field is missing or has the wrong type."""
        types: dict[str, tuple[type, ...]] = {
            "engine": (str,), "url": (str,), "pid": (int, type(None)), "port": (int,), "warehouse": (str,),
            "started_at": (str,), "log": (str,), "delta": (bool,), "reason": (str,),
        }
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = data.get(field.name)
            if not isinstance(value, types[field.name]) or (field.name in ("pid", "port") and isinstance(value, bool)):
                raise ValueError(f"bad or missing {field.name!r} in the cluster state")
            values[field.name] = value
        return cls(**values)


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


def _read_state(project: Path) -> ClusterState | None:
    """The recorded state, or None when there is none or it cannot be read."""
    try:
        data = json.loads(state_path(project).read_text(encoding="utf-8"))
        return ClusterState.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _write_state(project: Path, state: ClusterState) -> None:
    path = state_path(project)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_state(project: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(project).unlink()


@contextlib.contextmanager
def _locked(project: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the project's cluster lock; yields False when ``blocking`` is off and it is taken.

    flock locks belong to the open file, so threads of one process exclude each other too.
    """
    directory = cluster_dir(project)
    directory.mkdir(parents=True, exist_ok=True)
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


def _is_ours(cmdline: Sequence[str], state: ClusterState, project: Path) -> bool:
    """Whether a command line is this project's server for ``state`` (and not a reused pid)."""
    pairs = set(itertools.pairwise(cmdline))
    if state.engine == "sail":
        return (any("pysail" in arg for arg in cmdline) and ("--port", str(state.port)) in pairs
                and ("-C", str(cluster_dir(project))) in pairs)
    if state.engine == "spark":
        return (any(_SPARK_SERVER_CLASS in arg for arg in cmdline)
                and f"spark.connect.grpc.binding.port={state.port}" in cmdline
                and f"spark.sql.warehouse.dir={state.warehouse}" in cmdline)
    return False


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


def _pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentFailure(f"the spark engine needs pyspark, which {sys.executable} does not have")
    return Path(next(iter(spec.submodule_search_locations)))


def _server_command(choice: EngineChoice, port: int, project: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if choice.engine == "sail":
        if importlib.util.find_spec("pysail") is None:
            raise EnvironmentFailure(f"the sail engine needs pysail, which {sys.executable} does not have")
        command = [sys.executable, "-m", "pysail", "spark", "server", "--ip", HOST, "--port", str(port),
                   "-C", str(cluster_dir(project))]
        # Name Sail's catalog as Spark names its own, so `spark_catalog.schema.table` resolves
        # on both engines.
        env.setdefault("SAIL_CATALOG__LIST", '[{type="memory", name="spark_catalog", initial_database=["default"]}]')
        env.setdefault("SAIL_CATALOG__DEFAULT_CATALOG", "spark_catalog")
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


def _launch(project: Path, choice: EngineChoice, port: int | None) -> ClusterState:
    directory = cluster_dir(project)
    warehouse = warehouse_dir(project)
    warehouse.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = _free_port()
    elif not _port_is_free(port):
        raise EnvironmentFailure(f"port {port} on {HOST} is already in use by another program: "
                                 "choose another with --port, or leave it out to get a free one")
    command, env = _server_command(choice, port, project)
    # A notebook's kernel may start the server, which outlives it: stopping the kernel's tree spares it.
    env[OUTLIVES_ENV] = "1"
    log = log_path(project)
    if log.exists():
        os.replace(log, log.with_name(log.name + ".1"))
    with open(log, "ab") as out:
        try:
            server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      cwd=directory, env=env, start_new_session=True)
        except OSError as exc:
            raise EnvironmentFailure(f"could not start the {choice.engine} cluster: {exc}") from exc
    _CHILDREN[server.pid] = server
    state = ClusterState(
        engine=choice.engine, url=f"sc://{HOST}:{port}", pid=server.pid, port=port, warehouse=str(warehouse),
        started_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), log=str(log),
        delta=choice.delta, reason=choice.reason,
    )
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
    while not _accepts(state.port):
        if not _alive(state.pid):
            code = "" if child is None or child.returncode is None else f" (exit code {child.returncode})"
            raise EnvironmentFailure(f"the {state.engine} cluster exited while starting{code}: "
                                     f"{_last_log_line(Path(state.log))} (log: {state.log})")
        if time.monotonic() > deadline:
            raise EnvironmentFailure(f"the {state.engine} cluster did not accept connections on {HOST}:{state.port} "
                                     f"within {timeout:.0f} s (log: {state.log})")
        time.sleep(0.05)


def _current(project: Path) -> ClusterState | None:
    """The recorded cluster if it is running; stale or unreadable state is removed. Hold the lock."""
    state = _read_state(project)
    if state is not None and (state.engine == "external" or _server_alive(state, project)):
        return state
    _remove_state(project)
    return None


def _check_compatible(state: ClusterState, engine: str, port: int | None) -> None:
    wanted = "external" if engine.startswith("sc://") else engine
    same_engine = engine == "auto" or (wanted == state.engine and (wanted != "external" or engine == state.url))
    if not same_engine or (port is not None and port != state.port):
        asked = engine if port is None else f"{engine} on port {port}"
        raise InputError(f"a {state.engine} cluster is already running at {state.url}; "
                         f"run `nbflow cluster stop` before starting {asked}")


# ---------------------------------------------------------------------------------------------
# The public API


def start(project: Path, engine: str = "auto", port: int | None = None) -> ClusterState:
    """Start the project's cluster, or return the one already running.

    ``engine`` is ``auto``, ``sail``, ``spark`` or ``sc://HOST:PORT``; ``port`` defaults to a free
    one. A running cluster is returned as is when it matches the request (``auto`` matches any);
    a different engine or port than the running one raises InputError. Raises
    EnvironmentFailure when the port is taken or the server cannot start.
    """
    project = Path(project).resolve()
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"bad port {port}: expected 1-65535")
    if engine.startswith("sc://"):
        _parse_external(engine)
    elif engine not in ENGINES:
        raise InputError(f"unknown cluster engine {engine!r}: use auto, sail, spark or sc://HOST:PORT")
    with _locked(project):
        current = _current(project)
        if current is not None:
            _check_compatible(current, engine, port)
            if current.pid is not None and not _accepts(current.port):
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
            )
            _write_state(project, state)
            return state
        return _launch(project, choice, port)


def ensure_running(project: Path, engine: str = "auto") -> ClusterState:
    """The project's cluster, started if needed: what a notebook kernel calls before attaching."""
    return start(project, engine)


def stop(project: Path) -> bool:
    """Stop the project's cluster (an external one is only forgotten); True if there was one."""
    project = Path(project).resolve()
    with _locked(project):
        state = _read_state(project)
        if state is None:
            _remove_state(project)
            return False
        stopped = state.engine == "external"
        if state.pid is not None and _server_alive(state, project):
            _terminate(state.pid)
            stopped = True
        _remove_state(project)
        return stopped


def status(project: Path) -> ClusterState | None:
    """The running cluster, or None; state left by a server that is gone is cleaned up."""
    project = Path(project).resolve()
    state = _read_state(project)
    if state is not None and (state.engine == "external" or _server_alive(state, project)):
        return state
    if state_path(project).exists():
        # Clean up only if nobody is starting or stopping right now, and nothing changed since.
        with _locked(project, blocking=False) as mine:
            if mine and _read_state(project) == state:
                _remove_state(project)
    return None


def session_url(url: str, session_id: str) -> str:
    """``url`` with a ``session_id`` parameter: one Spark Connect session per attach."""
    if "/;" in url:
        return f"{url};session_id={session_id}"
    return f"{url.rstrip('/')}/;session_id={session_id}"


def attach(state: ClusterState) -> SparkSession:
    """A new Spark Connect session on the cluster, with its own session id.

    On Sail, ``spark.sql.warehouse.dir`` is set on the session (Sail's catalog is per session);
    the JVM server has it as a static conf already, and an external cluster has its own.
    """
    import uuid

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote(session_url(state.url, str(uuid.uuid4())))
    if state.engine == "sail":
        builder = builder.config("spark.sql.warehouse.dir", state.warehouse)
    return builder.create()
