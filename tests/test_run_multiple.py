"""Fabric's runMultiple runs out of the kernel (python -m nbflow.run_multiple): an interrupted cell
stops it, and it dies with its caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nbflow import read_result
from nbflow.errors import NotebookNotFound, NotebookRuntimeError
from nbflow.run_multiple import parse
from nbflow.runtime.context import RunContext
from nbflow.runtime.fabric import FabricNotebook
from nbflow.runtime.session import Session

from .conftest import NOTEBOOKS, exit_json, run, source_notebook

SLEEPER = """
from pathlib import Path
import time

Path(dbutils.widgets.get("marker")).write_text("started")
time.sleep(120)
dbutils.notebook.exit("woke up")
"""


@pytest.mark.parametrize(("dag", "message"), [
    ({"activities": "child"}, "runMultiple expects {'activities': [...]} or a list of notebook paths"),
    ({"activities": [{"name": "a"}]}, "runMultiple: activity #1 needs a 'name' and a 'path'"),
    ({"activities": [{"name": "a", "path": "child"}, {"name": "a", "path": "child"}]},
     "runMultiple: duplicate activity names: a"),
    ({"activities": [{"name": "a", "path": "child", "dependencies": ["b"]}]},
     "runMultiple: activity 'a' depends on unknown ['b']"),
    ({"activities": [{"name": "a", "path": "child", "dependencies": ["b"]},
                     {"name": "b", "path": "child", "dependencies": ["a"]}]},
     "runMultiple: dependency cycle: a -> b -> a"),
    ({"activities": [{"name": "a", "path": "child", "retry": "often"}]}, "runMultiple: activity 'a': invalid literal"),
    ({"activities": [{"name": "a", "path": "child", "timeoutPerCellInSeconds": -1}]},
     "runMultiple: activity 'a': 1 validation error for Task"),
])
def test_a_dag_that_cannot_run_is_refused_with_one_line(dag: dict[str, object], message: str) -> None:
    with pytest.raises(NotebookRuntimeError) as caught:
        parse(dag, NOTEBOOKS)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_list_of_paths_runs_all_at_once_with_fabrics_default_concurrency() -> None:
    dag = parse(["child", "./child_echo.py"], NOTEBOOKS)
    assert list(dag.names.values()) == ["child", "./child_echo.py"]
    assert [t.depends_on for t in dag.plan.tasks] == [[], []]
    assert dag.notebooks == {k: p for k, p in zip(dag.names, [NOTEBOOKS / "child.py", NOTEBOOKS / "child_echo.py"],
                                                   strict=True)}
    assert dag.concurrency == 3 * (os.cpu_count() or 1)
    assert dag.plan.timeout_seconds == 43200


def test_the_kernel_side_raises_the_error_its_process_reported() -> None:
    """validateDAG in the runtime, with its process: the refusal comes back as the same error."""
    session = Session(RunContext(notebook_path=str(NOTEBOOKS / "caller.py"), python=sys.executable))
    fabric = FabricNotebook(session)
    assert fabric.validateDAG({"activities": [{"name": "a", "path": "child"},
                                              {"name": "b", "path": "child_echo", "dependencies": ["a"]}]})
    with pytest.raises(NotebookNotFound, match="no_such_notebook"):
        fabric.validateDAG({"activities": [{"name": "a", "path": "no_such_notebook"}]})
    with pytest.raises(NotebookRuntimeError, match=r"^runMultiple: duplicate activity names: a$"):
        fabric.validateDAG({"activities": [{"name": "a", "path": "child"}, {"name": "a", "path": "child"}]})


@pytest.mark.kernel
def test_interrupting_the_cell_stops_run_multiple_and_its_notebooks(tmp_path: Path) -> None:
    source_notebook(tmp_path / "sleeper.py", SLEEPER)
    parent = source_notebook(tmp_path / "parent.py", f"""
        import json, os, signal, threading, time
        from pathlib import Path

        import psutil

        marker = Path({str(tmp_path / "started")!r})
        interrupted = []

        def interrupt():  # as the Jupyter "interrupt" button does, once the DAG's notebook runs
            while not marker.exists():
                time.sleep(0.1)
            interrupted.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        try:
            notebookutils.notebook.runMultiple(
                {{"activities": [{{"name": "sleepy", "path": "./sleeper", "args": {{"marker": str(marker)}}}}]}})
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "interrupted"
        stopped_in = time.monotonic() - interrupted[0]
        # What this kernel started is gone while the kernel itself still runs: no clean-up of the
        # kernel's tree did it.
        left = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
        dbutils.notebook.exit(json.dumps({{"outcome": outcome, "stopped_in": stopped_in, "left": left}}))
    """)
    result = run(parent)
    out = exit_json(result)
    assert out["outcome"] == "interrupted"
    assert out["left"] == []
    assert out["stopped_in"] < 60  # the sleeper would sleep 120 s
    [executed] = Path(result.output).with_suffix(".runMultiple").glob("*.ipynb")
    assert read_result(executed).status == "CANCELED"


@pytest.mark.kernel
def test_run_multiple_process_dies_with_its_caller(tmp_path: Path, project: Path) -> None:
    source_notebook(tmp_path / "sleeper.py", SLEEPER)
    marker = tmp_path / "started"
    context = RunContext(notebook_path=str(tmp_path / "caller.py"), project_dir=str(project),
                         dbfs_root=str(project / ".nbflow" / "dbfs"), python=sys.executable)
    request = {
        "dag": {"activities": [{"name": "sleepy", "path": "./sleeper", "args": {"marker": str(marker)}}]},
        "caller": str(tmp_path),
        "output_dir": str(tmp_path / "out"),
        "run_id": "r1",
        "context": context.for_child([]),
        "validate_only": False,
    }
    # A caller that starts runMultiple's process as the kernel does, then is killed outright.
    caller = subprocess.Popen(
        [sys.executable, "-c", (
            "import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-m', 'nbflow.run_multiple'], stdin=subprocess.PIPE, text=True,"
            " start_new_session=True)\n"
            "p.stdin.write(sys.argv[1]); p.stdin.close()\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(600)\n"
        ), json.dumps(request)],
        stdout=subprocess.PIPE, text=True,
    )
    assert caller.stdout is not None
    child = psutil.Process(int(caller.stdout.readline()))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline, "the DAG's notebook never started"
        assert caller.poll() is None
        time.sleep(0.2)
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    gone, alive = psutil.wait_procs([child], timeout=45)
    assert child in gone and not alive  # and the autouse fixture checks that its workers and kernels went too
    [executed] = (tmp_path / "out").glob("*.ipynb")
    assert read_result(executed).status == "CANCELED"
