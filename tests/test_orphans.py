"""Process life cycle: nothing a run started outlives it, whatever kills the run and however it
was launched; SIGTERM stops a run the way Ctrl-C does; no temporary folders are left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nbflow.results import read_result

from .conftest import NOTEBOOKS, cli

pytestmark = pytest.mark.kernel

# The six ways spawns.py leaves a process behind (one pid file each).
CASES = {"fork", "new_session", "ignores_sigterm", "double_fork", "plain", "sh_nohup"}
GONE_WITHIN_S = 10.0


def _running(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def _spawned(folder: Path) -> dict[str, psutil.Process | None]:
    """The processes spawns.py recorded in ``folder``, by case (None: already gone)."""
    found: dict[str, psutil.Process | None] = {}
    for path in folder.glob("*.pid"):
        text = path.read_text().strip()
        if not text:
            continue  # being written
        try:
            found[path.stem] = psutil.Process(int(text))
        except psutil.Error:
            found[path.stem] = None
    return found


def _survivors(procs: dict[str, psutil.Process | None], within: float = GONE_WITHIN_S) -> tuple[list[str], float]:
    """Which processes are still running after waiting up to ``within`` seconds, and how long it took."""
    started = time.monotonic()
    while True:
        left = sorted(name for name, proc in procs.items() if proc is not None and _running(proc))
        if not left or time.monotonic() - started >= within:
            return left, time.monotonic() - started
        time.sleep(0.1)


@pytest.fixture
def spawned_cleanup(tmp_path: Path) -> Iterator[Path]:
    """Where spawns.py records its processes; whatever a failing test leaves running is killed."""
    folder = tmp_path / "pids"
    yield folder
    for sub in [folder, *folder.glob("*")]:
        if sub.is_dir():
            for proc in _spawned(sub).values():
                if proc is not None:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()


def _plan(tmp_path: Path, tasks: dict[str, dict[str, str]], notebook: Path = NOTEBOOKS / "spawns.py") -> Path:
    lines = ["name: lifecycle", "tasks:"]
    for key, parameters in tasks.items():
        lines += [f"  - task_key: {key}", f"    notebook: {notebook}", "    parameters:"]
        lines += [f"      {name}: {json.dumps(value)}" for name, value in parameters.items()]
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_what_a_notebook_starts_ends_with_its_single_notebook_run(spawned_cleanup: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "spawns.py"), "-p", f"pids={spawned_cleanup}")
    assert proc.returncode == 0, proc.stderr
    procs = _spawned(spawned_cleanup)
    assert set(procs) == CASES
    left, _ = _survivors(procs)
    assert left == [], f"outlived the run: {left}"


def test_what_a_notebook_starts_ends_with_its_plan_run(tmp_path: Path, spawned_cleanup: Path) -> None:
    plan = _plan(tmp_path, {"one": {"pids": str(spawned_cleanup / "one")},
                            "two": {"pids": str(spawned_cleanup / "two")}})
    proc = cli("run", str(plan), "--mode", "parallel", "--json")
    assert proc.returncode == 0, proc.stderr
    for task in ("one", "two"):
        procs = _spawned(spawned_cleanup / task)
        assert set(procs) == CASES
        left, _ = _survivors(procs)
        assert left == [], f"task {task}: outlived the run: {left}"


def test_what_a_notebook_starts_ends_with_its_killed_worker(tmp_path: Path, spawned_cleanup: Path) -> None:
    plan = _plan(tmp_path, {"one": {"pids": str(spawned_cleanup), "kill_parent": "yes"}})
    before = set(Path(tempfile.gettempdir()).glob("nbflow-kernel-*"))
    proc = cli("run", str(plan), "--json")
    assert json.loads(proc.stdout)["tasks"][0]["error"]["ename"] == "WorkerError", proc.stderr
    procs = _spawned(spawned_cleanup)
    assert set(procs) == CASES
    left, _ = _survivors(procs)
    assert left == [], f"outlived their worker: {left}"
    # The orphaned kernel also took its folder (sockets, connection file with its key, log) along.
    deadline = time.monotonic() + 10
    while (kept := set(Path(tempfile.gettempdir()).glob("nbflow-kernel-*")) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kept == set()


def _sigint_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


@pytest.mark.parametrize("launch", ["subprocess", "background"])
def test_a_killed_cli_takes_its_workers_kernels_and_their_processes_with_it(
    tmp_path: Path, spawned_cleanup: Path, launch: str
) -> None:
    seconds = 15.0  # how long each task sleeps once its processes are started
    out = tmp_path / "out"
    plan = _plan(tmp_path, {key: {"pids": str(spawned_cleanup / key), "seconds": str(seconds)}
                            for key in ("a", "b", "c")})
    command = [sys.executable, "-m", "nbflow", "run", str(plan), "--mode", "parallel", "--output-dir", str(out)]
    if launch == "subprocess":
        shell = None
        runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli_pid = runner.pid
    else:
        # As a CI script starts things: a background job of a non-interactive shell ignores SIGINT.
        pid_file = tmp_path / "cli.pid"
        script = f"{shlex.join(command)} >/dev/null 2>&1 & echo $! > {shlex.quote(str(pid_file))}; wait"
        shell = subprocess.Popen(["bash", "-c", script], start_new_session=True)
        deadline = time.monotonic() + 10
        while not pid_file.is_file() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cli_pid = int(pid_file.read_text())
        while "nbflow" not in " ".join(psutil.Process(cli_pid).cmdline()):  # bash has forked, not yet run it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if sys.platform.startswith("linux"):
            assert _sigint_ignored(cli_pid)
    spawned: dict[str, psutil.Process | None] = {}
    deadline = time.monotonic() + 120
    while len(spawned) < 3 * len(CASES):
        assert time.monotonic() < deadline, "the tasks did not start their processes"
        spawned = {f"{key}/{case}": proc for key in ("a", "b", "c")
                   for case, proc in _spawned(spawned_cleanup / key).items()}
        time.sleep(0.2)
    sleeping_since = time.monotonic()
    tree = psutil.Process(cli_pid).children(recursive=True)
    workers = [p for p in tree if "nbflow.worker" in " ".join(p.cmdline())]
    kernels = [p for p in tree if "ipykernel_launcher" in " ".join(p.cmdline())]
    assert len(workers) >= 3 and len(kernels) >= 3
    folders = [Path(p.cmdline()[p.cmdline().index("-f") + 1]).parent for p in kernels]
    os.kill(cli_pid, signal.SIGKILL)
    if shell is not None:
        shell.wait(10)
    else:
        runner.wait(10)
    everything: dict[str, psutil.Process | None] = {
        **spawned, **{f"worker {p.pid}": p for p in workers}, **{f"kernel {p.pid}": p for p in kernels}}
    left, took = _survivors(everything)
    assert left == [], f"still running {took:.1f} s after the CLI was killed: {left}"
    # Their files went with them: sockets, connection files (with each kernel's key), logs.
    deadline = time.monotonic() + 10
    while any(f.exists() for f in folders) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [f for f in folders if f.exists()] == []
    # Had a worker survived, its task would have ended by now and called itself SUCCESS.
    time.sleep(max(sleeping_since + seconds + 3 - time.monotonic(), 0))
    for key in ("a", "b", "c"):
        executed = out / f"{key}.ipynb"
        if executed.is_file():
            assert read_result(executed).status != "SUCCESS", key


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _sigterm_once_running(args: list[str], executed: Path) -> tuple[str, str]:
    """Start ``nbflow ARGS``, SIGTERM it once ``executed`` exists and its cell sleeps; its output.
    It must have stopped as Ctrl-C stops it, with SIGTERM's exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(executed)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    return stdout, stderr


def test_sigterm_stops_a_plan_run_as_ctrl_c_does(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan(tmp_path, {"nap": {"seconds": "60"}}, NOTEBOOKS / "sleeps.py")
    stdout, _ = _sigterm_once_running(["run", str(plan), "--json", "--output-dir", str(out)], out / "nap.ipynb")
    summary = json.loads(stdout)
    assert summary["status"] == "CANCELED"
    assert {t["task_key"]: t["status"] for t in summary["tasks"]} == {"nap": "CANCELED"}
    assert json.loads((out / "run.json").read_text())["state"]["result_state"] == "CANCELED"
    assert (out / "report.html").is_file()
    assert read_result(out / "nap.ipynb").status == "CANCELED"


def test_sigterm_stops_a_notebook_run_as_ctrl_c_does(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout, _ = _sigterm_once_running(
        ["run", str(NOTEBOOKS / "sleeps.py"), "-p", "seconds=60", "--json", "--output-dir", str(out)],
        out / "sleeps.ipynb")
    assert json.loads(stdout)["status"] == "CANCELED"
    assert json.loads((out / "run.json").read_text())["status"] == "CANCELED"
    assert read_result(out / "sleeps.ipynb").status == "CANCELED"


@pytest.mark.parametrize("what", ["plan", "notebook"])
def test_runs_leave_no_kernel_folders_in_the_temporary_folder(tmp_path: Path, what: str) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    target = _plan(tmp_path, {"a": {"seconds": "0"}, "b": {"seconds": "0"}}, NOTEBOOKS / "sleeps.py") \
        if what == "plan" else NOTEBOOKS / "trivial.ipynb"
    proc = cli("run", str(target), env={"TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in temp.iterdir()) == []
