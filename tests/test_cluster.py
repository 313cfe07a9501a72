"""The local cluster: real Sail and JVM Spark Connect servers, started, attached to and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nbflow import project as paths
from nbflow.cluster import attach as cluster_attach
from nbflow.cluster import commands as cluster_commands
from nbflow.cluster import delta_jars, engines, processes
from nbflow.cluster import server as cluster
from nbflow.cluster import state as cluster_state
from nbflow.errors import EnvironmentFailure, InputError

from .conftest import cli, gate_available


@pytest.fixture
def stopped_after(project: Path) -> Iterator[Path]:
    """The test's project; whatever cluster the test started there is stopped afterwards."""
    yield project
    cluster.stop(project)


def servers_of(project: Path) -> list[psutil.Process]:
    """Live Sail / JVM Spark Connect servers whose command line names this project (the gate of a
    gated Sail server and the server behind it count as one: the process group's leader)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(project) in cmdline and (
            "pysail" in cmdline or "SparkConnectServer" in cmdline
        ):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(proc.pid) == proc.pid:
                    found.append(proc)
    return found


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_state(project: Path, **changes: object) -> Path:
    """A well-formed state file (version, checksum) naming a server that is not running."""
    state = {
        "engine": "sail", "url": "sc://127.0.0.1:1", "pid": dead_pid(), "port": 1,
        "warehouse": str(project / ".nbflow" / "warehouse"), "started_at": "2026-01-01T00:00:00+00:00",
        "log": str(project / ".nbflow" / "cluster" / "server.log"), "delta": True, "reason": "test",
        "access": "open: test", "socket": None,
    }
    state.update(changes)
    path = paths.cluster_state_file(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster_state.write_state(project, cluster_state.ClusterState.from_dict(state))
    return path


def run_sql_and_temp_view(state: cluster_state.ClusterState) -> None:
    spark = cluster_attach.attach(state)
    try:
        assert spark.sql("SELECT 1 AS x").collect()[0]["x"] == 1
        spark.range(5).createOrReplaceTempView("numbers")
        assert spark.sql("SELECT sum(id) AS total FROM numbers").collect()[0]["total"] == 10
    finally:
        spark.stop()


# --- Sail ----------------------------------------------------------------------------------


@pytest.mark.spark
def test_sail_start_attach_query_stop(stopped_after: Path) -> None:
    project = stopped_after
    state = cluster.start(project, "sail")
    assert state.engine == "sail" and state.delta is True
    if gate_available():
        # Behind the gate: a Unix socket only this user can open, no TCP port at all.
        assert state.access.startswith("gate:") and state.port == 0
        assert state.socket == str(project / ".nbflow" / "cluster" / "sc.sock")
        assert state.url == f"unix:{state.socket}"
        assert Path(state.socket).stat().st_mode & 0o777 == 0o600
    else:  # no namespaces here: plain TCP on 127.0.0.1, and the state says why
        assert state.access.startswith("open: ") and state.url == f"sc://127.0.0.1:{state.port}"
    assert paths.cluster_dir(project).stat().st_mode & 0o777 == 0o700
    assert not paths.cluster_token_file(project).exists()  # Sail checks none; the gate checks the peer's user
    assert state.warehouse == str(project / ".nbflow" / "warehouse") and Path(state.warehouse).is_dir()
    assert state.log == str(project / ".nbflow" / "cluster" / "server.log")
    recorded = json.loads(paths.cluster_state_file(project).read_text())
    assert recorded["version"] == cluster_state.STATE_VERSION and recorded["state"] == state.to_dict()
    assert recorded["checksum"].startswith("sha256:")
    assert cluster.status(project) == state
    assert [p.pid for p in servers_of(project)] == [state.pid]
    family = [psutil.Process(state.pid), *psutil.Process(state.pid).children(recursive=True)]
    assert not [c for p in family for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]

    run_sql_and_temp_view(state)

    assert cluster.stop(project) is True
    assert cluster.status(project) is None
    assert not paths.cluster_state_file(project).exists()
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    assert not Path(state.socket).exists() and not paths.cluster_token_file(project).exists()
    assert cluster.stop(project) is False


@pytest.mark.spark
def test_sail_with_a_port_is_plain_tcp_on_loopback_and_says_it_is_open(stopped_after: Path) -> None:
    port = processes.free_port()
    state = cluster.start(stopped_after, "sail", port=port)
    assert (state.url, state.port, state.socket) == (f"sc://127.0.0.1:{port}", port, None)
    assert state.access.startswith("open: --port") and "any local process can reach it" in state.access
    listening = {c.laddr for c in psutil.Process(state.pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert {addr.ip for addr in listening} == {"127.0.0.1"}
    run_sql_and_temp_view(state)


@pytest.mark.spark
def test_sail_tables_use_the_project_warehouse(stopped_after: Path) -> None:
    state = cluster.start(stopped_after, "sail")
    spark = cluster_attach.attach(state)
    try:
        spark.sql("CREATE TABLE t USING delta AS SELECT 1 AS a")
        assert spark.table("t").collect()[0]["a"] == 1
    finally:
        spark.stop()
    # Sail names a table's folder t-<uuid>.
    assert [p.parent.name.split("-")[0] for p in Path(state.warehouse).glob("*/_delta_log")] == ["t"]


@pytest.mark.spark
def test_start_is_idempotent(stopped_after: Path) -> None:
    first = cluster.start(stopped_after, "sail")
    again = cluster.start(stopped_after)  # auto accepts the running cluster, whatever its engine
    assert again == first
    assert cluster.ensure_running(stopped_after) == first
    assert len(servers_of(stopped_after)) == 1


@pytest.mark.spark
def test_a_different_engine_or_port_than_the_running_one_is_refused(stopped_after: Path) -> None:
    state = cluster.start(stopped_after, "sail")
    with pytest.raises(InputError, match="already running"):
        cluster.start(stopped_after, "spark")
    with pytest.raises(InputError, match="unknown cluster engine"):
        cluster.start(stopped_after, "duckdb")
    with pytest.raises(InputError, match="already running"):
        cluster.start(stopped_after, "sail", port=state.port + 1 if state.port < 65535 else 1024)
    assert cluster.status(stopped_after) == state


@pytest.mark.spark
def test_concurrent_starts_start_one_server(stopped_after: Path) -> None:
    results: list[cluster_state.ClusterState] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def starter() -> None:
        barrier.wait()
        try:
            results.append(cluster.start(stopped_after, "sail"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=starter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == 2 and results[0] == results[1]
    assert [p.pid for p in servers_of(stopped_after)] == [results[0].pid]


@pytest.mark.spark
def test_concurrent_starts_from_separate_processes_start_one_server(stopped_after: Path) -> None:
    code = "import sys; from nbflow.cluster import server; print(server.start(sys.argv[1], 'sail').pid)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(stopped_after)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    pids = {int(proc.communicate(timeout=60)[0]) for proc in procs}
    assert len(pids) == 1
    assert [p.pid for p in servers_of(stopped_after)] == list(pids)


@pytest.mark.spark
def test_stale_state_with_a_dead_pid_is_cleaned(stopped_after: Path) -> None:
    path = write_state(stopped_after)
    assert cluster.status(stopped_after) is None
    assert not path.exists()

    write_state(stopped_after)
    state = cluster.start(stopped_after, "sail")
    assert state.pid is not None and psutil.pid_exists(state.pid) and state.port != 1


def test_state_naming_a_live_process_that_is_not_the_server_is_stale(stopped_after: Path) -> None:
    path = write_state(stopped_after, pid=os.getpid())
    assert cluster.status(stopped_after) is None
    assert not path.exists()
    write_state(stopped_after, pid=os.getpid())
    assert cluster.stop(stopped_after) is False  # nothing of ours to stop; this process is not signalled
    assert not path.exists()


def test_port_taken_by_another_program(stopped_after: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(EnvironmentFailure, match=f"port {port} .*already in use") as info:
            cluster.start(stopped_after, "sail", port=port)
    assert info.value.exit_code == 3
    assert cluster.status(stopped_after) is None
    assert servers_of(stopped_after) == []


@pytest.mark.spark
def test_a_server_killed_with_sigkill_is_not_running(stopped_after: Path) -> None:
    state = cluster.start(stopped_after, "sail")
    assert state.pid is not None
    os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cluster.status(stopped_after) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.status(stopped_after) is None
    assert not paths.cluster_state_file(stopped_after).exists()
    restarted = cluster.start(stopped_after, "sail")
    assert restarted.pid != state.pid


def test_a_server_that_dies_while_starting_is_reported_with_its_last_log_line(
    stopped_after: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(choice: engines.EngineChoice, port: int, project: Path) -> tuple[list[str], dict[str, str]]:
        script = "import sys; print('starting'); print('boom: cannot bind'); sys.exit(7)"
        return [sys.executable, "-c", script], dict(os.environ)

    monkeypatch.setattr(cluster_commands, "server_command", failing)
    with pytest.raises(EnvironmentFailure, match=r"exited while starting \(exit code 7\): boom: cannot bind"):
        cluster.start(stopped_after, "sail")
    assert cluster.status(stopped_after) is None


def test_external_endpoint_is_recorded_not_started(stopped_after: Path) -> None:
    state = cluster.start(stopped_after, "sc://spark.example.com:15002")
    assert (state.engine, state.pid, state.port, state.delta) == ("external", None, 15002, False)
    assert cluster.status(stopped_after) == state
    assert cluster.start(stopped_after) == state
    assert cluster.stop(stopped_after) is True
    assert cluster.status(stopped_after) is None
    with pytest.raises(InputError, match="bad Spark Connect URL"):
        cluster.start(stopped_after, "sc://no-port")
    with pytest.raises(InputError, match="unknown cluster engine"):
        cluster.start(stopped_after, "duckdb")


def test_session_url_gets_its_own_session_id() -> None:
    assert cluster_attach.session_url("sc://127.0.0.1:5", "abc") == "sc://127.0.0.1:5/;session_id=abc"
    assert cluster_attach.session_url("sc://h:5/;token=t", "abc") == "sc://h:5/;token=t;session_id=abc"


# --- JVM Spark -----------------------------------------------------------------------------


@pytest.mark.jvm
def test_jvm_spark_engine_starts_attaches_and_stops(stopped_after: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_DELTA_JARS", str(stopped_after / "no-jars-here"))
    state = cluster.start(stopped_after, "spark")
    assert state.engine == "spark" and state.delta is False
    assert "NBFLOW_DELTA_JARS" in state.reason
    assert [p.pid for p in servers_of(stopped_after)] == [state.pid]
    assert cluster.start(stopped_after) == state
    # Spark Connect's token authentication: a client without the cluster's token is refused.
    assert state.access.startswith("token:")
    token = paths.cluster_token_file(stopped_after).read_text()
    assert not any(token in arg for arg in psutil.Process(state.pid).cmdline())  # ps shows command lines to all
    from pyspark.sql.connect.session import SparkSession

    plain = SparkSession.builder.remote(f"sc://127.0.0.1:{state.port}").create()
    plain.client.set_retry_policies([])
    with pytest.raises(Exception, match=r"UNAUTHENTICATED|Invalid authentication token"):
        plain.read.text("/etc/hostname").collect()

    run_sql_and_temp_view(state)

    assert cluster.stop(stopped_after) is True
    assert servers_of(stopped_after) == []
    assert cluster.status(stopped_after) is None


# --- Choosing the engine and Delta's arguments (no Java, no network) ----------------------------


def make_jars(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"PK")
    return folder


DELTA_JARS = ("delta-spark_2.13-4.4.0.jar", "delta-storage-4.4.0.jar")


def conf_values(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--conf"]


def test_delta_spark_args_from_a_jar_directory_take_every_jar_in_it(tmp_path: Path) -> None:
    jars = make_jars(tmp_path / "jars", *DELTA_JARS, "delta-kernel-api-4.4.0.jar", "unitycatalog-client-0.6.0.jar")
    args = engines.delta_spark_args({"NBFLOW_DELTA_JARS": str(jars), "NBFLOW_CACHE_DIR": str(tmp_path / "c")})
    assert args[0] == "--jars"
    assert args[1].split(",") == sorted(str(p) for p in jars.iterdir())
    assert conf_values(args) == list(engines.DELTA_CONFS)  # no Delta Connect plugins without their jar


def test_delta_connect_plugins_are_set_only_with_the_connect_server_jar(tmp_path: Path) -> None:
    jars = make_jars(tmp_path / "jars", *DELTA_JARS, "delta-connect-server_4.2_2.13-4.4.0.jar")
    args = engines.delta_spark_args({"NBFLOW_DELTA_JARS": str(jars)})
    assert conf_values(args) == [*engines.DELTA_CONFS, *engines.DELTA_CONNECT_CONFS]


def test_delta_spark_args_from_nbflows_cache_only_when_the_pinned_set_is_whole(tmp_path: Path) -> None:
    env = {"NBFLOW_CACHE_DIR": str(tmp_path / "cache")}
    folder = delta_jars.jar_dir(env)
    assert engines.delta_spark_args(env) == []
    folder.mkdir(parents=True)
    for artifact in delta_jars.ARTIFACTS:
        (folder / artifact.file_name).write_bytes(b"x" * artifact.size)
    args = engines.delta_spark_args(env)
    assert args[1].split(",") == [str(folder / a.file_name) for a in delta_jars.ARTIFACTS]
    (folder / delta_jars.ARTIFACTS[0].file_name).write_bytes(b"cut short")  # a torn copy is not a jar
    assert engines.delta_spark_args(env) == []


def test_a_named_jar_folder_without_delta_spark_gives_no_delta_even_with_a_full_cache(tmp_path: Path) -> None:
    env = {"NBFLOW_CACHE_DIR": str(tmp_path / "cache"),
           "NBFLOW_DELTA_JARS": str(make_jars(tmp_path / "jars", "delta-storage-4.4.0.jar"))}
    folder = delta_jars.jar_dir(env)
    folder.mkdir(parents=True)
    for artifact in delta_jars.ARTIFACTS:
        (folder / artifact.file_name).write_bytes(b"x" * artifact.size)
    assert engines.delta_spark_args(env) == []
    choice = engines.choose_engine("spark", env)
    assert (choice.delta, choice.fetch_delta) == (False, False)
    assert choice.reason.endswith("no delta-spark 4.x jar (Scala 2.13) in it)")


def test_auto_is_sail_instantly_and_spark_asks_for_delta_to_be_fetched(tmp_path: Path) -> None:
    began = time.monotonic()
    env = {"NBFLOW_CACHE_DIR": str(tmp_path / "cache")}
    auto = engines.choose_engine("auto", env)
    assert (auto.cluster_engine, auto.delta, auto.spark_args) == ("sail", True, ())
    assert auto.reason.startswith("auto: sail")
    # A full cache does not turn auto into the JVM engine: installing Delta changes no default.
    jars = make_jars(tmp_path / "jars", *DELTA_JARS)
    assert engines.choose_engine("auto", {**env, "NBFLOW_DELTA_JARS": str(jars)}).cluster_engine == "sail"

    fetch = engines.choose_engine("spark", env)
    assert (fetch.cluster_engine, fetch.delta, fetch.fetch_delta, fetch.spark_args) == ("spark", False, True, ())
    assert "not yet fetched" in fetch.reason
    found = engines.choose_engine("spark", {**env, "NBFLOW_DELTA_JARS": str(jars)})
    assert (found.delta, found.fetch_delta, found.spark_args[0]) == (True, False, "--jars")
    assert str(jars) in found.reason
    off = engines.choose_engine("spark", {**env, "NBFLOW_DELTA": "0"})
    assert (off.delta, off.fetch_delta) == (False, False) and "NBFLOW_DELTA=0" in off.reason
    assert engines.choose_engine("sail", {**env, "NBFLOW_DELTA_JARS": str(jars)}).cluster_engine == "sail"
    assert time.monotonic() - began < 1.0


# --- The command line ------------------------------------------------------------------------


@pytest.mark.kernel  # the cluster's pool service starts warm kernels
@pytest.mark.spark
def test_cli_start_status_logs_stop(stopped_after: Path) -> None:
    started = cli("cluster", "start", "--engine", "sail")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("started the sail cluster at unix:")
    assert "engine choice: engine sail requested" in started.stdout

    status = cli("cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["running"] is True and data["engine"] == "sail"
    assert set(data) == {"running", "pool", *cluster_state.ClusterState.__dataclass_fields__}
    # The server outlived the command that started it, and so did its warm kernels' pool service.
    assert [p.pid for p in servers_of(stopped_after)] == [data["pid"]]
    service = psutil.Process(data["pool"]["pid"])
    assert data["pool"]["target"] >= 1 and data["pool"]["autotermination_minutes"] == 120

    again = cli("cluster", "start")
    assert again.returncode == 0 and again.stdout.startswith("already running: sail cluster")
    conflict = cli("cluster", "start", "--engine", "spark")
    assert conflict.returncode == 2 and conflict.stderr.startswith("nbflow: a sail cluster is already running")

    logs = cli("cluster", "logs", "-n", "5")
    assert logs.returncode == 0 and "Spark Connect server" in logs.stdout

    stopped = cli("cluster", "stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped the sail cluster")
    after = json.loads(cli("cluster", "status", "--json").stdout)
    assert after["running"] is False and after["pid"] is None and after["pool"] is None
    assert not service.is_running()  # the stop stopped the pool service (and so its kernels)
    assert cli("cluster", "stop").stdout.strip() == "no cluster was running"
    assert cli("cluster", "status").stdout.strip() == "not running"


def test_cli_errors_are_one_line_with_exit_codes(stopped_after: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        taken = cli("cluster", "start", "--engine", "sail", "--port", str(port))
    assert taken.returncode == 3
    assert taken.stderr.startswith(f"nbflow: port {port} on 127.0.0.1 is already in use")
    assert len(taken.stderr.splitlines()) == 1

    bad = cli("cluster", "start", "--engine", "nope")
    assert bad.returncode == 2 and bad.stderr.startswith("nbflow: unknown cluster engine 'nope'")

    no_log = cli("cluster", "logs")
    assert no_log.returncode == 1 and no_log.stderr.startswith("nbflow: no cluster log at")


def test_stop_kills_a_server_that_ignores_sigterm(stopped_after: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stubborn(choice: engines.EngineChoice, port: int, project: Path) -> tuple[list[str], dict[str, str]]:
        script = ("import signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(120)")
        return [sys.executable, "-c", script], dict(os.environ)

    monkeypatch.setattr(cluster_commands, "server_command", stubborn)
    monkeypatch.setattr(processes, "is_ours", lambda cmdline, state, project: "SIG_IGN" in " ".join(cmdline))
    monkeypatch.setattr(processes, "STOP_TIMEOUT", 1.0)
    state = cluster.start(stopped_after, "sail")
    assert state.pid is not None
    began = time.monotonic()
    assert cluster.stop(stopped_after) is True
    assert 1.0 <= time.monotonic() - began < 5.0
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
