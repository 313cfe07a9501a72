"""The command line: exit codes, one-line errors, JSON on stdout only, inspect, papermill --engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from .conftest import NOTEBOOKS, as_from_a_terminal, cli


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
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nbflow: ") and text in lines[0], (args, proc.stderr)
        assert proc.stdout == ""


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
def test_killed_runner_leaves_no_kernel_behind(project: Path) -> None:
    proc = _start_and_wait_for(
        ["run", str(NOTEBOOKS / "parent_sleeping_child.py")], project,
        "processed/*/parent_sleeping_child.children/001-sleeps.ipynb",
    )
    proc.kill()  # no chance to clean up: kernels and the child must notice and stop themselves
    proc.communicate(timeout=30)
    [saved] = project.glob("processed/*/parent_sleeping_child.ipynb")
    assert nbformat.read(saved, as_version=4).metadata["nbflow"]["status"] == "RUNNING"


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
