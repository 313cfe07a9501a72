"""Faults of the local cluster: a server killed under running tasks and warm kernels, a damaged
state file, and who may reach the endpoint. Real servers, real kernels, real plans."""

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
from pathlib import Path

import grpc
import psutil
import pytest
from pyspark.sql.connect.session import SparkSession

from nbflow import project as paths
from nbflow.cluster import attach as cluster_attach
from nbflow.cluster import commands as cluster_commands
from nbflow.cluster import gate as cluster_gate
from nbflow.cluster import server as cluster
from nbflow.cluster import state as cluster_state
from nbflow.cluster.processes import free_port as processes_free_port
from nbflow.errors import ClusterDied, ClusterStateDamaged
from nbflow.pool import WorkerPool

from .conftest import cli, gate_available
from .test_cluster import servers_of

PLANS = Path(__file__).parent / "plans"


def kill_server(state: cluster_state.ClusterState) -> None:
    """SIGKILL the server, and return once it is dead (signal delivery takes a moment)."""
    assert state.pid is not None
    os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)


# --- A server that dies under its sessions ------------------------------------------------------


@pytest.mark.spark
@pytest.mark.parametrize("victim", ["gate", "sail"])
def test_a_session_on_a_dead_cluster_fails_in_seconds_with_one_line_and_the_next_attach_restarts_it(
    project: Path, victim: str
) -> None:
    state = cluster.start(project, "sail")
    assert state.pid is not None
    spark = cluster_attach.attach(state)
    assert spark.range(10).count() == 10
    if victim == "gate":
        kill_server(state)
    else:  # the Sail server behind the gate: the gate goes with it
        if not gate_available():
            pytest.skip("no gate on this machine (no unprivileged user namespaces): Sail is the server itself")
        (sail,) = psutil.Process(state.pid).children()
        sail.kill()
    began = time.monotonic()
    with pytest.raises(ClusterDied) as info:
        spark.range(10).count()
    assert time.monotonic() - began < 10  # pyspark's own retry policy waited 10 minutes and more
    assert str(info.value) == f"the local cluster (sail, pid {state.pid}) died; its log: {state.log}"
    with pytest.raises(ClusterDied):  # every later call says the same, at once
        spark.sql("SELECT 1").collect()

    restarted = cluster.ensure_running(project, "sail")
    assert restarted.pid != state.pid and [p.pid for p in servers_of(project)] == [restarted.pid]
    again = cluster_attach.attach(restarted)
    assert again.range(3).count() == 3
    log = Path(state.log).read_text()
    assert f"the sail server (pid {state.pid}) started at {state.started_at} was found dead" in log
    assert log.count("starting the sail cluster") == 2  # restarted once, into the same log


class _Cancelled(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED


@pytest.mark.parametrize(("alive_checks", "dies"), [(3, True), (None, False)])
def test_a_call_the_server_cancels_is_a_dead_cluster_only_if_the_server_then_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alive_checks: int | None, dies: bool
) -> None:
    # The gate cancels the calls in flight when Sail behind it dies, then exits: CI once saw the
    # raw CANCELLED where ClusterDied was due. A cancel from a server that stays is the call's own.
    state = cluster_state.ClusterState(
        engine="sail", url="unix:/nowhere", pid=4242, port=0, warehouse=str(tmp_path), started_at="now",
        log=str(tmp_path / "cluster.log"), delta=True, reason="test", access="gate: test", socket="/nowhere")
    checks: list[int] = []

    def server_alive(*_: object) -> bool:
        checks.append(1)
        return alive_checks is None or len(checks) <= alive_checks

    monkeypatch.setattr(cluster_attach, "server_alive", server_alive)
    monkeypatch.setattr(cluster_attach, "CANCELLED_GRACE_S", 0.5)
    policy = cluster_attach._retry_policy(state)
    if dies:
        with pytest.raises(ClusterDied, match=r"^the local cluster \(sail, pid 4242\) died; its log: "):
            policy.can_retry(_Cancelled())
    else:
        assert policy.can_retry(_Cancelled()) is False  # raised as pyspark raises it
    assert len(checks) > 1  # it waited to see


@pytest.mark.kernel
@pytest.mark.spark
def test_a_dead_cluster_fails_running_tasks_at_once_their_retry_restarts_it_and_the_next_run_works(
    project: Path,
) -> None:
    plan = str(PLANS / "cluster_dies.yaml")
    run = subprocess.Popen([sys.executable, "-m", "nbflow", "run", plan, "--json", "--mode", "parallel",
                            "--max-workers", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    looping = project / ".nbflow" / "dbfs" / "looping"
    deadline = time.monotonic() + 120
    while not all((looping / name).is_file() for name in "abc"):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    time.sleep(2)  # the three tasks are in their query loops
    state = cluster.status(project)
    assert state is not None
    kill_server(state)
    killed_at = time.monotonic()
    out, err = run.communicate(timeout=120)
    assert time.monotonic() - killed_at < 60, "the plan hung on the dead cluster"

    summary = json.loads(out)
    assert run.returncode == 0, err
    run_json = json.loads((Path(summary["output_dir"]) / "run.json").read_text())
    for task in run_json["tasks"]:
        first, second = task["attempts"]
        assert (first["result_state"], second["result_state"]) == ("FAILED", "SUCCESS"), task["task_key"]
        assert first["error"]["ename"] == "ClusterDied"
        assert first["error"]["evalue"] == cluster_attach.died_message(state)
    restarted = cluster.status(project)
    assert restarted is not None and restarted.pid != state.pid
    assert [p.pid for p in servers_of(project)] == [restarted.pid]  # restarted once, by one of the retries

    code, = [cli("run", plan, "--json", "--mode", "parallel", "-p", "seconds=1").returncode]
    assert code == 0
    assert cluster.status(project) == restarted


@pytest.mark.kernel
@pytest.mark.spark
def test_the_pool_never_hands_out_a_kernel_attached_to_a_dead_server(project: Path) -> None:
    pool = WorkerPool(1, {"project": str(project), "engine": "sail", "spark": True})
    try:
        first = pool.acquire(lambda: False)
        assert first is not None
        state = cluster.status(project)
        assert state is not None
        assert first.cluster == state.identity  # the warm kernel says which server it attached to
        pool.release(first, used=False)
        kill_server(state)
        deadline = time.monotonic() + 90
        second = pool.acquire(lambda: time.monotonic() > deadline)
        assert second is not None and second.pid != first.pid  # the stale kernel was not handed out
        restarted = cluster.status(project)
        assert restarted is not None and restarted.pid != state.pid
        assert second.cluster == restarted.identity
        assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
        pool.release(second, used=False)
    finally:
        pool.close()


# --- A damaged state file -----------------------------------------------------------------------


GARBAGE = {
    "garbage": "\x00\x17garbage\n",
    "truncated": None,  # the first half of the real file: a write cut short
    "edited": None,  # valid JSON, pid changed by hand: the checksum no longer matches
    "old format": None,  # the bare state, without version and checksum
}


def damage(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "garbage":
        path.write_text(GARBAGE["garbage"])
    elif how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "edited":
        data = json.loads(text)
        data["state"]["pid"] += 1
        path.write_text(json.dumps(data))
    else:
        path.write_text(json.dumps(json.loads(text)["state"]))


@pytest.mark.spark
@pytest.mark.parametrize("how", list(GARBAGE))
def test_a_damaged_state_file_never_starts_a_second_server(project: Path, how: str) -> None:
    state = cluster.start(project, "sail")
    damage(paths.cluster_state_file(project), how)

    with pytest.raises(ClusterStateDamaged) as info:
        cluster.status(project)
    message = str(info.value)
    assert message.startswith(f"the cluster state file {paths.cluster_state_file(project)} is damaged: ")
    assert f"a server of this project still runs (pid {state.pid})" in message
    assert "repair: `nbflow cluster stop`" in message and "\n" not in message

    adopted = cluster.ensure_running(project)
    assert adopted.pid == state.pid and adopted.socket == state.socket
    assert adopted.reason.startswith(f"adopted: found running (pid {state.pid}) when the state file")
    assert [p.pid for p in servers_of(project)] == [state.pid]
    assert cluster.status(project) == adopted  # the file is whole again
    spark = cluster_attach.attach(adopted)
    assert spark.range(4).count() == 4


@pytest.mark.spark
def test_cluster_status_names_the_damage_and_stop_stops_the_server_it_no_longer_names(project: Path) -> None:
    state = cluster.start(project, "sail")
    path = paths.cluster_state_file(project)
    path.write_text(path.read_text()[:40])

    status = cli("cluster", "status")
    assert status.returncode == 3
    assert status.stderr == (f"nbflow: the cluster state file {path} is damaged: not valid JSON (half-written or "
                             f"overwritten); a server of this project still runs (pid {state.pid}); repair: "
                             "`nbflow cluster stop` (stops every server of this project and removes the file), "
                             "then `nbflow cluster start` (or just start: it adopts a running server it can use)\n")

    stopped = cli("cluster", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == (f"stopped the server(s) of this project the damaged state file no longer "
                                      f"named (pid {state.pid})")
    assert servers_of(project) == [] and not path.exists()
    assert cli("cluster", "status").stdout.strip() == "not running"


@pytest.mark.spark
def test_an_orphan_server_is_adopted_rather_than_doubled_when_the_state_file_is_lost(project: Path) -> None:
    state = cluster.start(project, "sail")
    paths.cluster_state_file(project).unlink()
    assert cluster.status(project) is None
    assert cluster.ensure_running(project).pid == state.pid
    assert [p.pid for p in servers_of(project)] == [state.pid]


@pytest.mark.spark
def test_the_state_file_is_replaced_whole(project: Path) -> None:
    # Readers racing a writer see the old file or the new one, never a part.
    state = cluster.start(project, "sail")
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                cluster.status(project)
            except ClusterStateDamaged as exc:
                problems.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(300):
            again = cluster_state.ClusterState.from_dict({**state.to_dict(), "reason": "x" * n})
            cluster_state.write_state(project, again)
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert oct(paths.cluster_state_file(project).stat().st_mode & 0o777) == oct(0o600)


# --- Who may reach the endpoint -----------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.skipif("not gate_available()", reason="no unprivileged user namespaces here: Sail runs on plain TCP")
def test_only_this_users_processes_reach_sail(project: Path) -> None:
    state = cluster.start(project, "sail")
    assert state.socket is not None and state.access.startswith("gate:")
    socket_file = Path(state.socket)
    # Only this user may open the socket (connect() needs write permission) or its folder.
    assert socket_file.stat().st_mode & 0o777 == 0o600 and socket_file.stat().st_uid == os.getuid()
    assert socket_file.parent.stat().st_mode & 0o777 == 0o700
    # Sail's own port is in the gate's network namespace: nothing listens on it here.
    with pytest.raises(Exception, match=r"UNAVAILABLE|Connection refused|failed to connect"):
        plain = SparkSession.builder.remote(f"sc://127.0.0.1:{cluster_gate.INNER_PORT}").create()
        plain.client.set_retry_policies([])
        plain.sql("SELECT 1").collect()
    # nbflow's sessions go through the gate.
    assert cluster_attach.attach(state).read.text("/etc/hostname").count() >= 1


def test_the_gate_refuses_a_connection_from_another_user(tmp_path: Path) -> None:
    # The socket's mode keeps other users out; the gate also checks each peer's user id as the
    # kernel attests it (SO_PEERCRED), should the mode ever be loosened. Here "another user" is
    # a gate expecting a uid that is not ours.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "g.sock"))
        listener.listen(1)
        threading.Thread(target=cluster_gate._accept, args=(listener, os.getuid() + 1), daemon=True).start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "g.sock"))
            assert cluster_gate.peer_uid(client) == os.getuid()
            client.settimeout(10)
            assert client.recv(1) == b""  # closed at once, nothing relayed


def _echo_server() -> tuple[socket.socket, int]:
    """A TCP server on 127.0.0.1 that sends back what it gets, until the client ends."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve_one(conn: socket.socket) -> None:
        with conn:
            while chunk := conn.recv(1 << 16):
                conn.sendall(chunk)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_the_gate_relays_bytes_both_ways_and_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The relay without Sail: an echo server stands behind it. Every byte comes back in order
    # (a half-close passed on), many connections leave no descriptor or thread behind, and a
    # backend that is gone ends the client's connection rather than leaving it waiting.
    server, port = _echo_server()
    monkeypatch.setattr(cluster_gate, "INNER_PORT", port)
    payload = os.urandom(3 * 1024 * 1024)
    with server, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "g.sock"))
        listener.listen(16)
        threading.Thread(target=cluster_gate._accept, args=(listener, os.getuid()), daemon=True).start()

        def round_trip(data: bytes) -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(30)
                client.connect(str(tmp_path / "g.sock"))
                def send() -> None:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the gate ended it
                        client.sendall(data)
                        client.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                received = bytearray()
                # The end may come as a reset: the gate closed with the client's bytes unread.
                with contextlib.suppress(ConnectionResetError):
                    while chunk := client.recv(1 << 16):
                        received += chunk
                sender.join()
                return bytes(received)

        assert round_trip(payload) == payload
        time.sleep(0.2)
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        for n in range(100):
            assert round_trip(b"x" * n) == b"x" * n
        time.sleep(0.5)  # the relay threads close their ends after the client's
        assert len(os.listdir("/proc/self/fd")) <= fds and threading.active_count() <= threads
        server.close()  # the backend gone: a new connection ends at once
        monkeypatch.setattr(cluster_gate, "INNER_PORT", processes_free_port())
        assert round_trip(b"lost") == b""


@pytest.mark.spark
def test_where_namespaces_are_not_available_sail_runs_on_plain_tcp_and_says_so(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing_gate(project: Path, socket_file: Path, engine_command: list[str]) -> list[str]:
        # A gate as on a machine with user namespaces disabled: it says why and exits 75.
        script = (f"print('nbflow-gate: cannot isolate: unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: EPERM'); "
                  f"raise SystemExit({cluster_gate.CANNOT_ISOLATE})")
        return [sys.executable, "-c", script]

    monkeypatch.setattr(cluster_commands, "gate_command", refusing_gate)
    state = cluster.start(project, "sail")
    assert state.socket is None and state.url == f"sc://127.0.0.1:{state.port}"
    assert state.access == ("open: unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: EPERM; any local process can "
                            "reach it (Sail has no authentication)")
    assert cluster_attach.attach(state).range(2).count() == 2
    status = cli("cluster", "status")
    assert "access: open: unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: EPERM" in status.stdout


def test_isolation_failure_is_reported_with_its_cause() -> None:
    # unshare(CLONE_NEWUSER) refuses a process that runs threads (this test process does).
    blocker = threading.Event()
    thread = threading.Thread(target=blocker.wait)
    thread.start()
    try:
        # EINVAL for a threaded process; a container's seccomp may say EPERM first.
        refused = r"unshare\(CLONE_NEWUSER\|CLONE_NEWNET\) failed: E(INVAL|PERM)"
        with pytest.raises(cluster_gate.CannotIsolate, match=refused):
            cluster_gate.isolate()
    finally:
        blocker.set()
        thread.join()
