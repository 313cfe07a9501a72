"""``nbflow serve`` against hostile or broken clients, signals and crashes.

Raw sockets talk to a real ``nbflow serve`` process (or the in-process server where a setting must
be small), so what is checked is what a client on the network sees: the status line, how soon it
comes, whether the connection is closed, what the server logs, how much memory it takes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

from nbflow.serve.server import MAX_REQUEST_BYTES, WorkspaceServer

pytestmark = pytest.mark.serve

TOKEN = "dapi-hardening-token"
MARKERS = ("nbflow.worker", "ipykernel_launcher", "nbflow.task_process")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    pid: int  # the server's own pid (the shell's child when started with `&`)
    url: str
    host: str
    port: int

    def client(self) -> WorkspaceClient:
        return WorkspaceClient(host=self.url, token=TOKEN, auth_type="pat")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> str:
        """Signal the server, wait for it, and return what it wrote to stderr after its first line."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        _, err = self.proc.communicate(timeout=timeout)
        return err


def start_serve(background: bool = False, env: dict[str, str] | None = None, *args: str) -> Served:
    """A real ``nbflow serve`` on a free port; ``background`` starts it as a CI script's
    ``nbflow serve &`` does, from a non-interactive shell, where SIGINT is ignored."""
    command = [sys.executable, "-m", "nbflow", "serve", "--port", "0", *args]
    full_env = {**os.environ, **(env if env is not None else {"NBFLOW_SERVE_TOKEN": TOKEN})}
    if background:
        shell = " ".join(f"'{part}'" for part in command) + " & echo $! >&2; wait"
        proc = subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=full_env)
        assert proc.stderr is not None
        pid = int(proc.stderr.readline())
    else:  # as from a terminal: SIGINT acts, whatever the test runner's own disposition
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        pid = proc.pid
    assert proc.stderr is not None
    seen: list[str] = []  # the server's workers share its stderr: their lines may come first
    found = None
    while found is None and len(seen) < 20:
        seen.append(proc.stderr.readline())
        found = re.search(r"workspace at (http://([\d.]+):(\d+))", seen[-1])
    if found is None:  # never leave the server running behind a failed start
        os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
    assert found, seen
    return Served(proc, pid, found.group(1), found.group(2), int(found.group(3)))


@pytest.fixture
def served() -> Iterator[Served]:
    srv = start_serve()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def connect(srv: Served | WorkspaceServer, timeout: float = 10) -> socket.socket:
    if isinstance(srv, WorkspaceServer):
        host, port = str(srv.server_address[0]), int(srv.server_address[1])
    else:
        host, port = srv.host, srv.port
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def request_head(method: str, path: str, length: str | None, token: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one response (raises socket.timeout if none comes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closes the connection (EOF or reset) within the socket's timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


# -- authenticate first, cap bodies -----------------------------------------------------------------
def test_content_length_minus_one_gets_401_at_once_and_costs_no_memory(served: Served) -> None:
    server = psutil.Process(served.pid)
    served.client().workspace.get_status("/")  # warm: the figures compare a serving server with itself
    before = server.memory_info().rss
    sock = connect(served)
    sock.sendall(request_head("POST", "/api/2.0/workspace/mkdirs", "-1"))
    junk = b"x" * 2**20
    sent = 0

    def flood() -> None:  # what the attack streamed: as much as the server takes, 512 MB at most
        nonlocal sent
        with contextlib.suppress(OSError):
            while sent < 512 * 2**20:
                sock.sendall(junk)
                sent += len(junk)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    status, _, body = read_reply(sock)  # before the fix: no answer until the client stops sending
    flooder.join(30)
    sock.close()
    after = server.memory_info().rss
    print(f"server RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB; "
          f"client sent {sent / 2**20:.0f} MiB")
    assert status == 401 and json.loads(body)["error_code"] == "UNAUTHENTICATED"
    assert after - before < 32 * 2**20
    # With the token the same header is bad input, refused without reading either.
    sock = connect(served)
    sock.sendall(request_head("POST", "/api/2.0/workspace/mkdirs", "-1", TOKEN))
    status, headers, body = read_reply(sock)
    assert status == 400 and "Content-Length" in json.loads(body)["message"]
    assert headers.get("connection") == "close" and closed_by_peer(sock)
    sock.close()


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 403)])
def test_an_unauthenticated_body_is_refused_before_it_is_read(served: Served, token: str | None,
                                                              status: int) -> None:
    for length in (str(5 * 2**20), str(10**12)):  # under the cap (the server would wait) and far over it
        sock = connect(served)
        sock.sendall(request_head("POST", "/api/2.0/workspace/import", length, token))
        got, headers, _ = read_reply(sock)  # no body sent: an answer proves the body was not awaited
        assert got == status, length
        assert headers.get("connection") == "close" and closed_by_peer(sock)
        sock.close()
    # A client that asks before it sends (curl's Expect: 100-continue) is refused, not told to go on.
    sock = connect(served)
    head = request_head("POST", "/api/2.0/workspace/import", "1000000", token)
    sock.sendall(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    assert read_reply(sock)[0] == status
    sock.close()
    served.client().workspace.get_status("/")  # still serving


def test_an_authenticated_oversized_body_gets_413_naming_the_cap(served: Served) -> None:
    sock = connect(served)
    sock.sendall(request_head("POST", "/api/2.0/workspace/import", str(MAX_REQUEST_BYTES + 1), TOKEN))
    status, headers, body = read_reply(sock)
    reply = json.loads(body)
    assert status == 413 and str(MAX_REQUEST_BYTES) in reply["message"], reply
    assert headers.get("connection") == "close" and closed_by_peer(sock)
    sock.close()
    # The SDK's own upload of an oversized import sees the same message, not a reset connection.
    w = served.client()
    w.workspace.mkdirs("/big")
    with pytest.raises(Exception, match=str(MAX_REQUEST_BYTES)):
        w.workspace.import_("/big/x", content=base64.b64encode(os.urandom(MAX_REQUEST_BYTES)).decode(),
                            format=ImportFormat.RAW)
    # An import of the API's full 10 MB fits (base64 included): its own limit speaks, not the body cap.
    with pytest.raises(Exception, match="10 MB"):
        w.workspace.import_("/big/y", content=base64.b64encode(b"x" * (10 * 2**20 + 1)).decode(),
                            format=ImportFormat.RAW)


# -- slow and vanishing clients ---------------------------------------------------------------------
def test_a_stalled_client_is_timed_out_and_others_are_served(project: Path) -> None:
    srv = WorkspaceServer(project, TOKEN, request_timeout=1.0)
    srv.start()
    try:
        half_head = connect(srv)
        half_head.sendall(b"GET /api/2.0/workspace/get-status?path=/ HTTP/1.1\r\nHost: x\r\n")
        half_body = connect(srv)
        half_body.sendall(request_head("POST", "/api/2.0/workspace/mkdirs", "100", TOKEN) + b'{"path": ')
        # Meanwhile, others are answered.
        assert WorkspaceClient(host=srv.url, token=TOKEN, auth_type="pat").workspace.get_status("/")
        status, headers, body = read_reply(half_body)  # the body never comes: 408, then closed
        assert status == 408 and json.loads(body)["error_code"] == "REQUEST_TIMEOUT"
        assert headers.get("connection") == "close"
        assert closed_by_peer(half_body)
        assert closed_by_peer(half_head)  # the header never ends: closed (within the 10 s socket timeout)
        half_head.close()
        half_body.close()
    finally:
        srv.stop()


def test_a_client_that_disconnects_mid_response_costs_one_log_line(served: Served) -> None:
    w = served.client()
    w.workspace.mkdirs("/big")
    w.workspace.import_("/big/blob", content=base64.b64encode(os.urandom(6 * 2**20)).decode(),
                        format=ImportFormat.RAW)
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the response cannot fit in buffers
        sock.settimeout(10)
        sock.connect((served.host, served.port))
        sock.sendall(request_head("GET", "/api/2.0/workspace/export?path=/big/blob&direct_download=true", None,
                                  TOKEN))
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    time.sleep(1)
    assert w.workspace.get_status("/big/blob")  # still serving
    err = served.stop()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    gone = [line for line in lines if "connection" in line.lower()]
    assert len(gone) == 2, err
    assert lines[-1] == "nbflow serve: stopped", err


# -- the token stays with the server ----------------------------------------------------------------
# The worker's environment is read from outside below: in the sandbox a kernel may not read the
# environment of a process outside it (another user namespace), its own worker's included.
ENV_PROBE = """# Databricks notebook source
import json, os
dbutils.notebook.exit(json.dumps({"kernel": dict(os.environ)}))
"""


def wait_run(w: WorkspaceClient, run_id: int, timeout: float = 180) -> jobs.Run:
    deadline = time.monotonic() + timeout
    while True:
        run = w.jobs.get_run(run_id)
        if run.state and run.state.life_cycle_state not in (jobs.RunLifeCycleState.PENDING,
                                                            jobs.RunLifeCycleState.RUNNING,
                                                            jobs.RunLifeCycleState.QUEUED):
            return run
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.5)


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.parametrize("how", ["env", "option"])
def test_the_token_reaches_no_kernel_worker_or_state_file(project: Path, how: str) -> None:
    # The user ran the `export DATABRICKS_TOKEN=...` line the server printed, then restarted it.
    env = {"DATABRICKS_TOKEN": TOKEN, "NBFLOW_SERVE_TOKEN": TOKEN} if how == "env" else {"DATABRICKS_TOKEN": TOKEN}
    srv = start_serve(False, env, *(["--token", TOKEN] if how == "option" else []))
    try:
        w = srv.client()
        w.workspace.mkdirs("/t")
        w.workspace.import_("/t/probe", content=base64.b64encode(ENV_PROBE.encode()).decode(),
                            format=ImportFormat.SOURCE, language=Language.PYTHON)
        run = w.jobs.submit(run_name="probe", tasks=[jobs.SubmitTask(
            task_key="probe", notebook_task=jobs.NotebookTask(notebook_path="/t/probe"))]).response
        done = wait_run(w, run.run_id)
        task = (done.tasks or [])[0]
        output = w.jobs.get_run_output(task.run_id)
        assert done.state and done.state.result_state == jobs.RunResultState.SUCCESS, output.error
        seen = json.loads(output.notebook_output.result or "{}")  # type: ignore[union-attr]
        assert seen["kernel"]["NBFLOW_PROJECT_DIR"] == str(project)  # the probe did read the environments
        assert not [k for k, v in seen["kernel"].items() if TOKEN in v]
        children = psutil.Process(srv.pid).children(recursive=True)
        assert any("nbflow.worker" in " ".join(child.cmdline()) for child in children)  # the workers are read
        for child in children:  # warm workers and kernels too
            with contextlib.suppress(psutil.Error):
                assert not [k for k, v in child.environ().items() if TOKEN in v], child.cmdline()
    finally:
        srv.stop()
    leaked = [p for p in (project / ".nbflow").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked


# -- stopping, crashing, restarting ------------------------------------------------------------------
SLEEPER = """# Databricks notebook source
dbutils.widgets.text("marker", "")
import pathlib, time
pathlib.Path(dbutils.widgets.get("marker")).write_text("started")
time.sleep(120)
"""


def start_sleeping_run(srv: Served, marker: Path) -> tuple[WorkspaceClient, int]:
    """A job of two tasks, the first asleep in its notebook (``marker`` written), the second waiting."""
    w = srv.client()
    w.workspace.mkdirs("/t")
    w.workspace.import_("/t/sleeper", content=base64.b64encode(SLEEPER.encode()).decode(),
                        format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    job = w.jobs.create(name="sleepy", tasks=[
        jobs.Task(task_key="sleeps", notebook_task=jobs.NotebookTask(
            notebook_path="/t/sleeper", base_parameters={"marker": str(marker)})),
        jobs.Task(task_key="after", depends_on=[jobs.TaskDependency(task_key="sleeps")],
                  notebook_task=jobs.NotebookTask(notebook_path="/t/sleeper",
                                                  base_parameters={"marker": str(marker) + ".2"}))])
    run_id = w.jobs.run_now(job.job_id).response.run_id
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.2)
    return w, run_id


def nbflow_children(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [p for p in psutil.Process(pid).children(recursive=True)
                if any(m in " ".join(p.cmdline()) for m in MARKERS)]
    return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background &"])
def test_sigterm_stops_serve_at_once_with_a_run_in_progress(project: Path, tmp_path: Path,
                                                            background: bool) -> None:
    srv = start_serve(background)
    _, run_id = start_sleeping_run(srv, tmp_path / "marker")
    children = nbflow_children(srv.pid)
    assert children
    started = time.monotonic()
    err = srv.stop(signal.SIGTERM, timeout=60)
    took = time.monotonic() - started
    assert took < 10, f"nbflow serve took {took:.1f} s to stop: {err}"  # 52 s before the fix (background)
    deadline = time.monotonic() + 5
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), [p.cmdline() for p in alive(children)]
    again = WorkspaceServer(project, TOKEN)
    try:
        run = again.workspace.jobs.get_run(run_id)
    finally:
        again.server_close()
        again.workspace.close()
    assert run["state"]["result_state"] == "CANCELED", run["state"]
    states = {t["task_key"]: (t["state"]["life_cycle_state"], t["state"].get("result_state")) for t in run["tasks"]}
    assert states == {"sleeps": ("TERMINATED", "CANCELED"), "after": ("TERMINATED", "CANCELED")}, states


@pytest.mark.kernel
@pytest.mark.spark
def test_after_a_crash_no_task_of_an_interrupted_run_is_left_running(project: Path, tmp_path: Path) -> None:
    srv = start_serve()
    w, run_id = start_sleeping_run(srv, tmp_path / "marker")
    children = nbflow_children(srv.pid)
    live = w.jobs.get_run(run_id)
    assert {t.task_key: t.state.life_cycle_state for t in live.tasks or [] if t.state} == {
        "sleeps": jobs.RunLifeCycleState.RUNNING, "after": jobs.RunLifeCycleState.PENDING}
    srv.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15  # orphaned workers notice their parent is gone and stop
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children)
    again = start_serve()
    try:
        run = again.client().jobs.get_run(run_id)
        task_states = [t.state for t in run.tasks or [] if t.state]
        assert run.state and run.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
        assert len(task_states) == 2
        for state in task_states:
            assert state.life_cycle_state not in (jobs.RunLifeCycleState.PENDING, jobs.RunLifeCycleState.RUNNING)
            assert state.result_state is not None and "stopped during the run" in (state.state_message or "")
        sleeps = next(t for t in run.tasks or [] if t.task_key == "sleeps")
        assert sleeps.end_time and sleeps.end_time >= (sleeps.start_time or 0)
    finally:
        again.stop()


# -- the run records ---------------------------------------------------------------------------------
def _client_with_ok_task(srv: WorkspaceServer) -> tuple[WorkspaceClient, jobs.SubmitTask]:
    """A databricks-sdk client of ``srv``, and a task running the plans' ok.py uploaded to /t/ok."""
    w = WorkspaceClient(host=srv.url, token=TOKEN, auth_type="pat")
    w.workspace.mkdirs("/t")
    source = (Path(__file__).parent / "plans" / "nb" / "ok.py").read_bytes()
    w.workspace.import_("/t/ok", content=base64.b64encode(source).decode(), format=ImportFormat.SOURCE,
                        language=Language.PYTHON)
    return w, jobs.SubmitTask(task_key="ok", notebook_task=jobs.NotebookTask(notebook_path="/t/ok"))


@pytest.mark.kernel
@pytest.mark.spark
def test_each_run_is_stored_alone_and_a_run_rewrites_only_its_own_record(project: Path) -> None:
    srv = WorkspaceServer(project, TOKEN)
    srv.start()
    try:
        w, task = _client_with_ok_task(srv)
        first = wait_run(w, w.jobs.submit(run_name="first", tasks=[task]).response.run_id)
        records = project / ".nbflow" / "workspace" / "runs"
        first_record = records / f"{first.run_id}.json"
        written = first_record.stat().st_mtime_ns
        second = wait_run(w, w.jobs.submit(run_name="second", tasks=[task]).response.run_id)
        assert second.state and second.state.result_state == jobs.RunResultState.SUCCESS
    finally:
        srv.stop()
    assert first_record.stat().st_mtime_ns == written  # the second run's events left the first's alone
    assert json.loads(first_record.read_text())["run_name"] == "first"
    assert json.loads((records / f"{second.run_id}.json").read_text())["run_name"] == "second"
    assert not (project / ".nbflow" / "workspace" / "jobs.json").exists()  # no job: a run start does not write it
    assert not list(records.glob("*.tmp"))
    again = WorkspaceServer(project, TOKEN)
    try:
        listed = again.workspace.jobs.list_runs({})
        assert [r["run_name"] for r in listed["runs"]] == ["second", "first"]
        later = {"name": "later", "tasks": [{"task_key": "ok", "notebook_task": {"notebook_path": "/t/ok"}}]}
        assert again.workspace.jobs.create(later, "2.2") > second.run_id  # ids are not reused
    finally:
        again.server_close()
        again.workspace.close()


def test_a_workspace_saved_in_one_file_is_read_and_its_interrupted_run_closed(project: Path) -> None:
    root = project / ".nbflow" / "workspace"
    root.mkdir(parents=True)
    running = {"task_key": "a", "run_id": 8, "state": {"life_cycle_state": "RUNNING"}, "start_time": 1000,
               "end_time": 0}
    done = {"task_key": "b", "run_id": 9, "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
            "start_time": 1000, "end_time": 2000}
    waiting = {"task_key": "c", "run_id": 10, "state": {"life_cycle_state": "PENDING"}, "start_time": 0,
               "end_time": 0}
    run = {"run_id": 7, "job_id": None, "run_name": "old", "run_type": "SUBMIT_RUN", "start_time": 1000,
           "end_time": 0, "state": {"life_cycle_state": "RUNNING"}, "tasks": [running, done, waiting]}
    (root / "jobs.json").write_text(json.dumps({"jobs": {}, "runs": {"7": run}, "tokens": {}, "next_id": 11}))
    srv = WorkspaceServer(project, TOKEN)
    try:
        got = srv.workspace.jobs.get_run(7)
    finally:
        srv.server_close()
        srv.workspace.close()
    assert got["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    states = {t["task_key"]: (t["state"]["life_cycle_state"], t["state"].get("result_state")) for t in got["tasks"]}
    assert states == {"a": ("TERMINATED", "CANCELED"), "b": ("TERMINATED", "SUCCESS"), "c": ("TERMINATED", "CANCELED")}
    assert got["tasks"][0]["end_time"] >= 1000 and got["tasks"][2]["end_time"] == 0
    assert "runs" not in json.loads((root / "jobs.json").read_text())
    assert json.loads((root / "runs" / "7.json").read_text())["state"]["life_cycle_state"] == "INTERNAL_ERROR"


@pytest.mark.kernel
@pytest.mark.spark
def test_a_cancel_that_comes_after_every_task_ended_leaves_the_run_as_its_tasks_say(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.serve.run_execution import RunExecutor

    progress = RunExecutor._progress

    def cancel_once_done(executor: RunExecutor, run_id: int) -> None:
        """runs/cancel arriving just as the last task ended, before the run did."""
        progress(executor, run_id)
        run = executor.records.runs[run_id]
        ended = all(t["state"].get("result_state") for t in run["tasks"])
        if ended and run["state"].get("life_cycle_state") == "RUNNING":
            executor.queue.cancel(run)

    monkeypatch.setattr(RunExecutor, "_progress", cancel_once_done)
    srv = WorkspaceServer(project, TOKEN)
    srv.start()
    try:
        w, task = _client_with_ok_task(srv)
        run = wait_run(w, w.jobs.submit(run_name="late cancel", tasks=[task]).response.run_id)
    finally:
        srv.stop()
    assert [t.state.result_state for t in run.tasks or [] if t.state] == [jobs.RunResultState.SUCCESS]
    assert run.state and run.state.result_state == jobs.RunResultState.SUCCESS, run.state
