"""Regression tests for defects found in review: working folder, secrets, inputs, clean-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbflow import read_result

from .conftest import NOTEBOOKS, cli, run


def test_notebook_runs_in_its_own_folder() -> None:
    assert run("sub/cwd.py").exit_value == str((NOTEBOOKS / "sub").resolve())


@pytest.fixture
def secrets(project: Path) -> str:
    value = 'tok"en\\with\nnewline'
    (project / ".nbflow").mkdir()
    (project / ".nbflow" / "secrets.json").write_text(json.dumps({"app": {"token": value}}))
    return value


def test_secret_passed_to_a_child_is_redacted_in_every_record(secrets: str) -> None:
    result = run("secret_to_child.py")
    assert result.exit_value == f"length {len(secrets)}"
    [child] = result.children
    assert child["parameters"]["token"] == "[REDACTED]"
    child_result = read_result(child["output"])
    assert child_result.parameters["token"]["value"] == "[REDACTED]"
    assert child_result.variables["received"]["repr"] == "'[REDACTED]'"
    for saved in (Path(result.output), Path(child["output"])):
        text = saved.read_text()
        assert "newline" not in text, saved  # neither raw nor escaped spellings of the secret
    assert "token" in result.variables and "newline" not in result.variables["token"]["repr"]


def test_dates_in_a_parameters_file_become_iso_strings(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("x: 2026-01-31\n")
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-f", str(params), "--json")
    assert proc.returncode == 1  # child.py does int(x): the date arrived as its ISO string
    error = json.loads(proc.stdout)["tasks"][0]["error"]
    assert "invalid literal for int() with base 10: '2026-01-31'" in error["evalue"]


def test_non_string_parameter_names_are_refused(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("1: one\n")
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-f", str(params))
    assert proc.returncode == 2 and "must be a string" in proc.stderr


def test_keyword_parameters_are_widgets_only() -> None:
    result = run("params.ipynb", {"n": 2, "enabled": "no", "class": "x"})
    assert result.ok and json.loads(result.exit_value)["n"] == 2


def test_run_cycle_is_reported() -> None:
    result = run("run_cycle_a.py")
    assert result.status == "FAILED"
    assert "%run cycle:" in result.error.evalue and "run_cycle_b.py" in result.error.evalue


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


def test_timeout_holds_even_when_a_cell_ignores_interrupts() -> None:
    result = run("stubborn.py", timeout=2)
    assert result.status == "TIMEDOUT"
    assert result.duration_s < 12
    assert any("could not read the notebook's variables" in w for w in result.warnings)


def test_output_problems_are_input_errors(tmp_path: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "trivial.ipynb"), "--output-dir", "/proc/nbflow-cannot")
    assert proc.returncode == 2 and "cannot create the output folder" in proc.stderr
    proc = cli("run", str(NOTEBOOKS / "trivial.ipynb"), "--output-dir", str(NOTEBOOKS))
    assert proc.returncode == 2 and "would overwrite its source" in proc.stderr
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1", "metadata": {}}],
                               "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    proc = cli("run", str(bad))
    assert proc.returncode == 2 and "not a valid .ipynb" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_old_notebooks_without_cell_ids_run_quietly(tmp_path: Path) -> None:
    old = tmp_path / "old.ipynb"
    old.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {},
                                          "outputs": [], "execution_count": None}],
                               "metadata": {}, "nbformat": 4, "nbformat_minor": 2}))
    proc = cli("run", str(old), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0 and proc.stderr == ""


def test_rerun_into_the_same_folder_forgets_old_children(tmp_path: Path) -> None:
    first = run("parent_run.py", output_dir=tmp_path)
    assert len(first.children) == 3
    second = run("parent_run.py", output_path=tmp_path / "parent_run.ipynb", parameters={})
    assert len(second.children) == 3  # the same three, not six
    other = run("child.py", output_dir=tmp_path)
    assert other.children == []


def test_kernel_log_is_kept_only_for_a_dead_kernel(tmp_path: Path) -> None:
    run("child.py", output_dir=tmp_path)
    assert not list(tmp_path.glob("*.kernel.log"))
    dead = run("dies.py", output_dir=tmp_path)
    assert dead.status == "FAILED"
