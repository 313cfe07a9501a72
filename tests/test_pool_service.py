"""The cluster's pool service: warm kernels that outlive commands, leased over a private socket.

Real parts throughout: the Sail cluster, the service, its zygote, worker processes and kernels,
the CLI as a user runs it. The faults are the issue's: the service killed mid-lease, a leased
kernel killed, two commands after the last warm kernel, auto-termination, the project folder
deleted, the leasing command killed; after each, nothing is left running (the ``no_orphans``
fixture checks every test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from nbflow import pool_client, pool_wire
from nbflow.cluster import server as cluster

from .conftest import as_from_a_terminal, cli, source_notebook

pytestmark = [pytest.mark.kernel, pytest.mark.spark]

# A notebook that says which process ran it, and whose parent that was, then waits if asked.
WHO = (
    """
    dbutils.widgets.text("sleep", "0")
    dbutils.widgets.text("tag", "")
    """,
    """
    import json, os, pathlib, time
    mark = pathlib.Path("/dbfs/who")
    mark.mkdir(parents=True, exist_ok=True)
    (mark / (dbutils.widgets.get("tag") or "x")).write_text(str(os.getpid()))
    time.sleep(float(dbutils.widgets.get("sleep")))
    dbutils.notebook.exit(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "foo": os.environ.get("NBFLOW_T_FOO"),
                                      "spark": spark.range(3).count()}))
    """,
)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # ended; its parent has not looked yet
    except psutil.NoSuchProcess:
        return True


def start_cluster(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    started = cli("cluster", "start", *args, env=env)
    assert started.returncode == 0, started.stderr
    status = json.loads(cli("cluster", "status", "--json").stdout)
    assert status["pool"] is not None, started.stdout
    return status


def warm(project: Path, count: int = 1) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        status = pool_client.status(project)
        return status if status and status["warm"] >= count else None

    return wait_for(ready, 60, f"{count} warm kernel(s)")  # type: ignore[no-any-return]


def zygote_of(project: Path) -> psutil.Process:
    service = psutil.Process(pool_client.status(project)["pid"])
    return next(p for p in service.children() if "nbflow.kernel_zygote" in " ".join(p.cmdline()))


def run_cli(notebook: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nbflow", "run", str(notebook), "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=as_from_a_terminal)


def exit_of(out: str) -> dict[str, Any]:
    summary = json.loads(out)
    task = summary["tasks"][0]
    assert task["status"] == "SUCCESS", summary
    return json.loads(task["exit_value"])


def test_runs_lease_fresh_warm_kernels_from_the_service(project: Path, tmp_path: Path) -> None:
    start_cluster()
    warm(project, 2)
    notebook = source_notebook(tmp_path / "who.py", *WHO)
    zygote = zygote_of(project)
    first = subprocess.run([sys.executable, "-m", "nbflow", "run", str(notebook), "--json"], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "NBFLOW_T_FOO": "from the command"})
    assert first.returncode == 0, first.stderr
    second = cli("run", str(notebook), "--json")
    one, two = exit_of(first.stdout), exit_of(second.stdout)
    # Both ran on kernels the service's zygote forked; each on its own (a clean namespace each).
    assert one["ppid"] == two["ppid"] == zygote.pid and one["pid"] != two["pid"]
    assert one["spark"] == 3
    # The kernel took over the environment of the command that asked for the run.
    assert one["foo"] == "from the command" and two["foo"] is None
    wait_for(lambda: gone(one["pid"]), 30, "the used kernel to be stopped")


def test_a_dbutils_notebook_run_child_runs_on_a_warm_kernel(project: Path, tmp_path: Path) -> None:
    start_cluster()
    warm(project)
    source_notebook(tmp_path / "who.py", *WHO)
    parent = source_notebook(tmp_path / "parent.py", """
        import json, os
        child = json.loads(dbutils.notebook.run("./who", 60, {"tag": "child"}))
        dbutils.notebook.exit(json.dumps({"child": child, "me": os.getpid()}))
    """)
    done = cli("run", str(parent), "--json")
    assert done.returncode == 0, done.stderr
    result = exit_of(done.stdout)
    assert result["child"]["ppid"] == zygote_of(project).pid != result["me"]


def sleeping_run(project: Path, tmp_path: Path, tag: str, seconds: int) -> tuple[Path, subprocess.Popen[str], int]:
    """With the cluster up and a kernel warm: a CLI run of a notebook that sleeps, once it sleeps;
    the notebook, the command, and the pid of the kernel it runs on."""
    warm(project)
    notebook = source_notebook(tmp_path / "who.py", *WHO)
    run = run_cli(notebook, "-p", f"sleep={seconds}", "-p", f"tag={tag}")
    marker = project / ".nbflow" / "dbfs" / "who" / tag
    pid = int(wait_for(lambda: marker.is_file() and marker.read_text(), 60, "the notebook's kernel"))
    return notebook, run, pid


def test_a_killed_leased_kernel_fails_its_run_and_is_replaced(project: Path, tmp_path: Path) -> None:
    start_cluster()
    notebook, run, pid = sleeping_run(project, tmp_path, "victim", 60)
    os.kill(pid, signal.SIGKILL)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    task = json.loads(out)["tasks"][0]
    assert task["status"] == "FAILED" and task["error"]["ename"] == "DeadKernelError"
    again = cli("run", str(notebook), "--json")
    assert again.returncode == 0 and exit_of(again.stdout)["spark"] == 3


def test_a_killed_command_has_its_leased_kernel_reclaimed(project: Path, tmp_path: Path) -> None:
    start_cluster()
    _notebook, run, pid = sleeping_run(project, tmp_path, "orphan", 300)
    run.kill()
    run.communicate()
    # The service sees its client gone, cancels the notebook (then kills it) and replaces the kernel.
    wait_for(lambda: gone(pid), pool_wire.CANCEL_GRACE_S + 15, "the leased kernel to be reclaimed")
    warm(project)


def test_ctrl_c_cancels_a_run_on_the_service_and_keeps_its_notebook(project: Path, tmp_path: Path) -> None:
    start_cluster()
    _notebook, run, _pid = sleeping_run(project, tmp_path, "ctrlc", 300)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    summary = json.loads(out)
    assert summary["tasks"][0]["status"] == "CANCELED"
    assert Path(summary["tasks"][0]["output"]).is_file()


def test_the_service_killed_mid_lease_fails_the_run_at_once_and_leaves_nothing(project: Path, tmp_path: Path) -> None:
    status = start_cluster()
    notebook, run, kernel = sleeping_run(project, tmp_path, "lost", 300)
    os.kill(status["pool"]["pid"], signal.SIGKILL)
    out, err = run.communicate(timeout=60)
    assert run.returncode != 0 and "pool service stopped while the notebook ran" in err, (out, err)
    # Its workers and their kernels followed it (their lifelines were the service's).
    wait_for(lambda: gone(kernel), 30, "the kernel to end with the service")
    # The next command starts a new service for the cluster, which kept running.
    again = cli("run", str(notebook), "--json")
    assert again.returncode == 0, again.stderr
    assert pool_client.status(project)["pid"] != status["pool"]["pid"]


def test_two_commands_after_the_last_warm_kernel_both_run(project: Path, tmp_path: Path) -> None:
    one_kernel = {"NBFLOW_POOL_SIZE": "1", "NBFLOW_POOL_MAX": "1"}
    start_cluster(env=one_kernel)
    assert warm(project)["limit"] == 1
    notebook = source_notebook(tmp_path / "who.py", *WHO)
    runs = [run_cli(notebook, "-p", "sleep=1", "-p", f"tag=t{i}") for i in range(2)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        results.append(exit_of(out))
    zygote = zygote_of(project).pid
    assert results[0]["pid"] != results[1]["pid"] and {r["ppid"] for r in results} == {zygote}


def test_the_cluster_stops_itself_when_idle_but_not_while_it_works(project: Path, tmp_path: Path) -> None:
    status = start_cluster("--autotermination-minutes", "0.05")  # 3 s
    notebook = source_notebook(tmp_path / "who.py", *WHO)
    busy = cli("run", str(notebook), "--json", "-p", "sleep=6")  # longer than the idle limit
    assert busy.returncode == 0, busy.stderr
    assert cluster.status(project) is not None  # a run in progress is work
    wait_for(lambda: cluster.status(project) is None, 30, "auto-termination")
    wait_for(lambda: gone(status["pid"]) and gone(status["pool"]["pid"]), 30, "the server and the service to end")
    assert "auto-termination: no work for 0.05 minutes" in (project / ".nbflow" / "cluster" / "server.log").read_text()
    # The next Spark notebook starts the cluster again, as on Databricks.
    again = cli("run", str(notebook), "--json")
    assert again.returncode == 0 and exit_of(again.stdout)["spark"] == 3


def test_deleting_the_project_folder_stops_its_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(doomed))
    status = start_cluster()
    warm(doomed)
    processes = [psutil.Process(status["pid"]), psutil.Process(status["pool"]["pid"]), zygote_of(doomed)]
    shutil.rmtree(doomed)
    wait_for(lambda: all(gone(p.pid) for p in processes), 30, "the cluster to stop")


def test_a_service_that_cannot_start_costs_one_warning_and_the_run_goes_on(project: Path, tmp_path: Path) -> None:
    cluster.start(project)  # a cluster without its service (as a notebook's kernel starts one)
    pool_wire.socket_file(project).mkdir()  # the service's socket cannot be made: it dies at start
    notebook = source_notebook(tmp_path / "who.py", *WHO)
    done = cli("run", str(notebook), "--json")
    assert done.returncode == 0, done.stderr
    assert exit_of(done.stdout)["spark"] == 3  # on a kernel of its own
    warnings = [line for line in done.stderr.splitlines() if "pool service" in line]
    assert len(warnings) == 1 and warnings[0].startswith("nbflow: warning: the cluster's pool service did not start")
