"""The command line: exit codes, one-line errors, options refused where they mean nothing, JSON on
stdout only, inspect, validate, schema, papermill --engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import nbformat
import pytest
from click.testing import CliRunner, Result
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from nbflow.cli.commands import COMMANDS
from nbflow.cli.exits import EXIT_CODES, exit_code
from nbflow.cli.main import cli as nbflow_group
from nbflow.results import to_payload
from nbflow.runs import CellError, NotebookResult
from nbflow.serve.server import WorkspaceServer

from .conftest import NOTEBOOKS, as_from_a_terminal, cli

PLANS = Path(__file__).parent / "plans"


def invoke(*args: str) -> Result:
    """The command line in this process (click's runner): for what no process boundary decides."""
    return CliRunner().invoke(nbflow_group, list(args), prog_name="nbflow")


@pytest.mark.kernel
def test_run_json_summary_is_all_of_stdout(project: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-p", "x=4", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "SUCCESS"
    assert Path(summary["output_dir"]).parent == project / "processed"
    [task] = summary["tasks"]
    assert task["task_key"] == "child" and task["exit_value"] == "8" and task["error"] is None
    assert set(task) == {"task_key", "notebook", "status", "exit_value", "output", "duration_s", "error"}
    assert Path(task["output"]).is_file()
    run_json = json.loads((Path(summary["output_dir"]) / "run.json").read_text())
    assert run_json["tasks"] == summary["tasks"]


@pytest.mark.kernel
def test_run_human_output_and_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("run", str(NOTEBOOKS / "child.py"), "--output-dir", str(out))
    assert proc.returncode == 0
    assert proc.stdout.startswith("SUCCESS ") and "exit value '2'" in proc.stdout
    assert (out / "child.ipynb").is_file() and (out / "run.json").is_file()


@pytest.mark.kernel
def test_parameters_file_and_cli_precedence(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("n: 2\nlabel: from-file\n")
    proc = cli("run", str(NOTEBOOKS / "params.ipynb"), "-f", str(params), "-p", "n=9", "-p", "enabled=no", "--json")
    task = json.loads(proc.stdout)["tasks"][0]
    values = json.loads(task["exit_value"])
    assert values["n"] == 9 and values["label"] == "from-file"
    inspected = json.loads(cli("inspect", task["output"], "--json").stdout)
    assert inspected["parameters"]["n"] == {"value": 9, "source": "cli"}
    assert inspected["parameters"]["label"] == {"value": "from-file", "source": f"file:{params}"}


@pytest.mark.kernel
def test_failed_notebook_exits_1_with_one_line_naming_the_cell() -> None:
    proc = cli("run", str(NOTEBOOKS / "fails.py"))
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("nbflow: FAILED ") and "fails.py at cell 2: ValueError: boom in cell 2" in line
    assert "executed notebook:" in line


@pytest.mark.kernel
def test_failed_notebook_json_has_the_error() -> None:
    proc = cli("run", str(NOTEBOOKS / "fails.py"), "--json")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["status"] == "FAILED"
    assert summary["tasks"][0]["error"] == {"cell_index": 2, "ename": "ValueError", "evalue": "boom in cell 2"}


@pytest.mark.kernel
def test_timeout_exits_1() -> None:
    proc = cli("run", str(NOTEBOOKS / "sleeps.py"), "--timeout", "2", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "TIMEDOUT"


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["dies.py"], "FAILED {nb}dies.py at cell 1: DeadKernelError: the kernel died while running this cell"),
        (["sleeps.py", "--timeout", "2"], "TIMEDOUT {nb}sleeps.py at cell 1: TimeoutError"),
        (["widget_undefined.py"], "FAILED {nb}widget_undefined.py at cell 1: InputWidgetNotDefined"),
    ],
)
def test_faults_exit_1_with_one_line_and_keep_the_notebook(args: list[str], text: str) -> None:
    proc = cli("run", str(NOTEBOOKS / args[0]), *args[1:])
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert text.format(nb=f"{NOTEBOOKS}/") in line
    saved = Path(line.rsplit("(executed notebook: ", 1)[1].rstrip(")"))
    assert saved.is_file() and nbformat.read(saved, as_version=4).metadata["nbflow"]["status"] in line


@pytest.mark.kernel
def test_log_output_streams_the_notebook_output_to_stderr() -> None:
    proc = cli("run", str(NOTEBOOKS / "magics.py"), "--log-output", "--json")
    assert proc.returncode == 0
    assert "from sh" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "SUCCESS"


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    cases = {
        ("run", str(NOTEBOOKS / "missing.ipynb")): "notebook not found",
        ("run", str(NOTEBOOKS / "not_a_notebook.py")): "Databricks notebook source",
        ("run", str(NOTEBOOKS / "malformed.py")): "cell 2: line 2 of a MAGIC cell",
        ("run", str(NOTEBOOKS / "broken.ipynb")): "not a valid .ipynb",
        ("run", str(NOTEBOOKS / "child.py"), "-p", "novalue"): "-p 'novalue': expected NAME=VALUE",
        ("run", str(NOTEBOOKS / "child.py"), "-f", str(tmp_path / "nope.yaml")): "parameters file not found",
        ("inspect", str(NOTEBOOKS / "trivial.ipynb")): "not a notebook executed by nbflow",
    }
    for args, text in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nbflow: ") and text in lines[0], (args, result.stderr)
        assert result.stdout == ""


@pytest.mark.kernel
def test_kernel_that_cannot_start_exits_3(project: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "trivial.ipynb"), env={"NBFLOW_KERNEL_PYTHON": "/nonexistent/python"})
    assert proc.returncode == 3
    [line] = proc.stderr.strip().splitlines()
    assert "could not start a Python kernel (/nonexistent/python)" in line
    [saved] = project.glob("processed/*/trivial.ipynb")
    payload = nbformat.read(saved, as_version=4).metadata["nbflow"]
    assert payload["status"] == "FAILED" and payload["error"]["ename"] == "KernelStartError"


@pytest.mark.kernel
def test_unknown_parameter_warns_on_stderr_only() -> None:
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-p", "typo=1", "--json")
    assert proc.returncode == 0
    json.loads(proc.stdout)
    assert "warning: parameter 'typo' was passed" in proc.stderr


@pytest.mark.kernel
def test_inspect_json_and_human(project: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "exit_early.py"), "--json")
    output = json.loads(proc.stdout)["tasks"][0]["output"]
    data = json.loads(cli("inspect", output, "--json").stdout)
    assert {"status", "exit_value", "parameters", "variables", "error", "cells"} <= set(data)
    assert data["status"] == "SUCCESS" and data["exit_value"] == "done early"
    assert data["variables"]["before"] == {"type": "int", "repr": "1", "value": 1}
    assert [c["status"] for c in data["cells"]] == ["completed", "completed", "skipped"]
    assert all(isinstance(c["duration_s"], float) for c in data["cells"][:2])
    human = cli("inspect", output)
    assert human.returncode == 0 and "done early" in human.stdout and "before" in human.stdout


@pytest.mark.kernel
def test_inspect_failed_run_names_the_cell() -> None:
    output = json.loads(cli("run", str(NOTEBOOKS / "fails.py"), "--json").stdout)["tasks"][0]["output"]
    data = json.loads(cli("inspect", output, "--json").stdout)
    assert data["error"] == {"cell_index": 2, "ename": "ValueError", "evalue": "boom in cell 2"}


@pytest.mark.kernel
def test_papermill_engine_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / "params.ipynb"), str(out), "--engine", "nbflow",
         "-p", "n", "3", "-p", "enabled", "True", "--no-progress-bar"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(out, as_version=4)
    payload = nb.metadata["nbflow"]
    assert payload["status"] == "SUCCESS"
    values = json.loads(payload["exit_value"])
    assert values["n"] == 3 and values["widget_n"] == "3"
    assert payload["parameters"]["n"] == {"value": 3, "source": "papermill"}


@pytest.mark.kernel
def test_papermill_engine_reports_failures(tmp_path: Path) -> None:
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('pm')")])
    src = tmp_path / "in.ipynb"
    nbformat.write(source, src)
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(src), str(tmp_path / "out.ipynb"), "--engine", "nbflow",
         "--no-progress-bar"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "ValueError" in proc.stderr


@pytest.mark.kernel
def test_ctrl_c_cancels_saves_and_stops_the_kernel(project: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbflow", "run", str(NOTEBOOKS / "sleeps.py"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(project.glob("processed/*/sleeps.ipynb")):
        time.sleep(0.2)
    time.sleep(2.0)  # let the sleeping cell start
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "CANCELED"
    assert summary["tasks"][0]["error"]["ename"] == "KeyboardInterrupt"
    assert Path(summary["tasks"][0]["output"]).is_file()


def _start_and_wait_for(args: list[str], project: Path, pattern: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbflow", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(project.glob(pattern)):
        time.sleep(0.2)
    assert list(project.glob(pattern)), f"{pattern} never appeared"
    time.sleep(2.0)  # let the cell that sleeps start
    return proc


@pytest.mark.kernel
@pytest.mark.spark  # a notebook that runs others starts the cluster, whose warm kernels run them
def test_ctrl_c_during_a_workflow_stops_the_child_and_its_kernel(project: Path) -> None:
    proc = _start_and_wait_for(
        ["run", str(NOTEBOOKS / "parent_sleeping_child.py"), "--json"], project,
        "processed/*/parent_sleeping_child.children/001-sleeps.ipynb",
    )
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert json.loads(out)["status"] == "CANCELED"
    # the autouse no_orphans fixture then checks that both kernels and the child process are gone


@pytest.mark.kernel
@pytest.mark.spark  # as above
def test_killed_runner_leaves_no_kernel_behind(project: Path) -> None:
    proc = _start_and_wait_for(
        ["run", str(NOTEBOOKS / "parent_sleeping_child.py")], project,
        "processed/*/parent_sleeping_child.children/001-sleeps.ipynb",
    )
    proc.kill()  # no chance to clean up: the warm kernels' service notices, cancels and saves
    proc.communicate(timeout=30)
    [saved] = project.glob("processed/*/parent_sleeping_child.ipynb")
    deadline = time.monotonic() + 30
    while nbformat.read(saved, as_version=4).metadata["nbflow"]["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the killed command's notebook was never stopped"
        time.sleep(0.2)
    assert nbformat.read(saved, as_version=4).metadata["nbflow"]["status"] == "CANCELED"


@pytest.mark.kernel
def test_printed_output_of_a_plan_task_is_kept_per_task(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: p\ntasks:\n  - task_key: sh\n    notebook: {NOTEBOOKS / 'magics.py'}\n")
    proc = cli("run", str(plan), "--json")
    assert proc.returncode == 0, proc.stderr
    folder = Path(json.loads(proc.stdout)["output_dir"])
    assert "from sh" in (folder / "sh.log").read_text()


@pytest.mark.kernel
def test_papermill_engine_uses_the_project_secrets(project: Path, tmp_path: Path) -> None:
    (project / ".nbflow").mkdir()
    (project / ".nbflow" / "secrets.yaml").write_text("app:\n  token: pm-secret-value\n")
    out = tmp_path / "out.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'dbutils.notebook.exit(str(len(dbutils.secrets.get("app", "token"))))')])
    src = tmp_path / "in.ipynb"
    nbformat.write(nb, src)
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(src), str(out), "--engine", "nbflow", "--no-progress-bar"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert nbformat.read(out, as_version=4).metadata["nbflow"]["exit_value"] == str(len("pm-secret-value"))


@pytest.mark.kernel
def test_old_notebooks_without_cell_ids_run_quietly(tmp_path: Path) -> None:
    old = tmp_path / "old.ipynb"
    old.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {},
                                          "outputs": [], "execution_count": None}],
                               "metadata": {}, "nbformat": 4, "nbformat_minor": 2}))
    proc = cli("run", str(old), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0 and proc.stderr == ""


# -- in this process (click's runner): no kernel, no server -----------------------------------------
@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["--mode", "parallel"], "--mode"),
        (["--only", "a", "--max-workers", "2"], "--max-workers, --only"),
        (["--from", "a"], "--from"),
        (["--fail-fast"], "--fail-fast"),
        (["--repair", "processed/x"], "--repair"),
    ],
)
def test_a_notebook_run_refuses_the_options_of_plans(args: list[str], refused: str, project: Path) -> None:
    result = invoke("run", str(NOTEBOOKS / "child.py"), *args)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"nbflow: {refused}: ") and "of plan runs only" in line and "child.py is a notebook" in line
    assert not (project / "processed").exists()  # nothing ran


@pytest.mark.parametrize(("args", "refused"), [(["--timeout", "5"], "--timeout"), (["--log-output"], "--log-output")])
def test_a_plan_run_refuses_the_options_of_notebooks(args: list[str], refused: str, project: Path) -> None:
    result = invoke("run", str(PLANS / "chain.yaml"), *args)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"nbflow: {refused}: ") and "of notebook runs only" in line
    assert "chain.yaml is a plan" in line
    assert not (project / "processed").exists()


def test_validate_prints_the_order_or_every_problem(tmp_path: Path) -> None:
    ok = invoke("validate", str(PLANS / "chain.yaml"))
    assert ok.exit_code == 0 and ok.stdout.startswith(f"{PLANS / 'chain.yaml'}: OK: plan ")
    assert "order a -> " in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\ntasks:\n  - task_key: x\n    notebook: missing.py\n    depends_on: [ghost]\n")
    refused = invoke("validate", str(bad))
    assert refused.exit_code == 2 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"nbflow: {bad}:") for line in lines)
    assert "unknown task 'ghost'" in refused.stderr and "notebook not found" in refused.stderr


def test_schema_is_the_json_schema_of_a_plan() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Plan" and {"name", "tasks"} <= set(schema["required"])


def test_a_bad_option_value_is_a_usage_error_not_an_internal_error() -> None:
    # click's own errors pass through the handler: exit 2 and click's usage line.
    result = invoke("compare", str(PLANS / "chain.yaml"), "--modes", "sequential,fast")
    assert result.exit_code == 2
    assert "Invalid value for --modes: unknown mode fast" in result.stderr and "internal error" not in result.stderr


def test_help_lists_every_command_and_each_loads() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name, entry in COMMANDS.items():
        assert f"{name}  " in result.stdout and entry.short_help in result.stdout
        command = nbflow_group.get_command(click.Context(nbflow_group), name)
        assert command is not None and command.name == name and command.short_help == entry.short_help
    unknown = invoke("nope")
    assert unknown.exit_code == 2 and "No such command 'nope'" in unknown.stderr


def test_the_exit_code_of_each_result_state() -> None:
    assert {state: exit_code(state) for state in EXIT_CODES} == {
        "SUCCESS": 0, "SUCCESS_WITH_FAILURES": 0, "FAILED": 1, "TIMEDOUT": 1, "CANCELED": 130}
    assert exit_code("INTERNAL_ERROR") == 1 and exit_code("SKIPPED") == 1  # what else a workspace reports


def _executed(path: Path, result: NotebookResult) -> Path:
    """An executed notebook as nbflow saves one: two timed cells and the run's payload."""
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    cells[0].metadata["papermill"] = {"status": "completed", "duration": 0.25}
    cells[1].metadata["papermill"] = {"status": "failed", "duration": 0.5}
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["nbflow"] = to_payload(result)
    nbformat.write(nb, path)
    return path


def test_inspect_shows_what_the_run_recorded(tmp_path: Path) -> None:
    executed = _executed(tmp_path / "nb.ipynb", NotebookResult(
        notebook="nb.py", output=None, status="FAILED", exit_value=None,
        variables={"x": {"type": "int", "repr": "1", "value": 1}},
        parameters={"n": {"value": 3, "source": "cli"}}, task_values={"rows": 40},
        error=CellError(1, "ValueError", "boom"), duration_s=0.75))
    data = json.loads(invoke("inspect", str(executed), "--json").stdout)
    assert data["status"] == "FAILED" and data["output"] == str(executed)
    assert data["error"] == {"cell_index": 1, "ename": "ValueError", "evalue": "boom"}
    assert [(c["status"], c["duration_s"]) for c in data["cells"]] == [("completed", 0.25), ("failed", 0.5)]
    human = invoke("inspect", str(executed))
    assert human.exit_code == 0
    for text in ("FAILED", "failed at cell 1: ValueError: boom", "Parameters", "cli", "Variables", "rows", "0.250"):
        assert text in human.stdout, text


# -- a remote run that is cancelled exits as a cancelled local run does ------------------------------
@pytest.mark.serve
@pytest.mark.kernel
@pytest.mark.spark  # the workspace starts its cluster (Sail) for the job
def test_a_cancelled_remote_run_exits_130_as_a_local_one(project: Path) -> None:
    token = "dapi-cancel-test"
    server = WorkspaceServer(project, token)
    server.start()
    try:
        folder = project / "plan"
        folder.mkdir()
        (folder / "nap.py").write_text((PLANS / "nb" / "nap.py").read_text())
        (folder / "plan.yaml").write_text("name: napping\ntasks:\n  - task_key: nap\n    notebook: nap.py\n")
        env = {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": token}
        deployed = cli("remote", "deploy", str(folder / "plan.yaml"), env=env, timeout=300)
        assert deployed.returncode == 0, deployed.stderr
        proc = subprocess.Popen([sys.executable, "-m", "nbflow", "remote", "run", str(folder / "plan.yaml"), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert "started run" in started, started
        run_id = int(started.split("started run ")[1].split()[0])
        w = WorkspaceClient(host=server.url, token=token)
        deadline = time.monotonic() + 60
        while w.jobs.get_run(run_id).state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the remote run never started"
            time.sleep(0.2)
        w.jobs.cancel_run(run_id)
        out, err = proc.communicate(timeout=120)
        assert json.loads(out)["status"] == "CANCELED", err
        assert proc.returncode == 130, err
    finally:
        server.stop()


def test_table_list_and_show_read_the_registry_without_a_cluster(project: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from nbflow.catalog import Registry

    location = tmp_path / "sales"
    write_deltalake(str(location), pa.table({"region": ["north", "south", "east"], "amount": [1, 2, 3]}))
    write_deltalake(str(location), pa.table({"region": ["west"], "amount": [4]}), mode="append")
    Registry(project).register("main.default.sales", str(location), "delta", managed=False)
    Registry(project).register("main.default.gone", str(tmp_path / "removed"), "delta", managed=False)
    listed = {row["name"]: row for row in json.loads(invoke("table", "list", "--json").stdout)}
    assert listed["main.default.sales"]["rows"] == 4 and listed["main.default.sales"]["version"] == 1
    assert listed["main.default.gone"]["error"].startswith("cannot read: ")  # listed all the same
    human = invoke("table", "list")
    assert human.exit_code == 0 and "main.default.sales" in human.stdout  # a name is never cut (the location folds)
    shown = json.loads(invoke("table", "show", "sales", "--limit", "2", "--history", "--json").stdout)
    assert shown["columns"] == ["region", "amount"] and len(shown["sample"]) == 2
    assert [h["version"] for h in shown["history"]] == [1, 0]
    missing = invoke("table", "show", "nope")
    assert missing.exit_code == 2 and "no table named nope" in missing.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly_with_sigpipes_code() -> None:
    # `nbflow cluster status | head -1` printed "internal error: BrokenPipeError": the reader is
    # gone before nbflow writes (its end of the pipe closed at once).
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == b""
