"""dbutils.notebook.run: fresh kernels, arguments, exit values, failures, timeouts, threads, nesting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow import read_result

from .conftest import exit_json, run

pytestmark = pytest.mark.kernel


def test_run_returns_the_childs_exit_value_in_a_fresh_namespace() -> None:
    result = run("parent_run.py")
    values = exit_json(result)
    assert values == {"doubled": "42", "with_ext": "10", "no_exit": "", "leak": False}


def test_children_are_saved_next_to_the_parent_and_listed_in_its_result() -> None:
    result = run("parent_run.py")
    children_dir = Path(result.output).with_name("parent_run.children")
    saved = sorted(p.name for p in children_dir.glob("*.ipynb"))
    assert saved == ["001-child.ipynb", "002-child.ipynb", "003-child_no_exit.ipynb"]
    assert [(c["status"], c["exit_value"]) for c in result.children] == [
        ("SUCCESS", "42"), ("SUCCESS", "10"), ("SUCCESS", None)
    ]
    assert result.children[0]["parameters"] == {"x": "21", "caller": "nobody"}
    child = read_result(children_dir / "001-child.ipynb")
    assert child.parameters["x"] == {"value": "21", "source": "dbutils.notebook.run"}
    assert child.run_id == result.run_id


def test_child_failure_raises_workflow_exception_with_details() -> None:
    outcome = exit_json(run("parent_child_fails.py"))
    assert outcome["raised"] is True
    assert "NotebookExecutionException: FAILED" in outcome["message"]
    assert outcome["status"] == "FAILED"
    assert outcome["error"] == {"cell_index": 1, "ename": "KeyError", "evalue": "'child broke'"}
    assert outcome["output_exists"] is True
    assert outcome["missing"].startswith("WorkflowException:")
    assert "notebook not found: ./no_such_notebook" in outcome["missing"]


def test_child_timeout_stops_the_child_and_raises() -> None:
    result = run("parent_timeout.py")
    outcome = exit_json(result)
    assert outcome["raised"] is True and outcome["type"] == "WorkflowException"
    assert outcome["status"] == "TIMEDOUT"
    assert "NotebookExecutionException: TIMEDOUT" in outcome["message"]
    assert outcome["elapsed"] < 20
    assert [c["status"] for c in result.children] == ["TIMEDOUT"]


def test_concurrent_runs_from_threads() -> None:
    result = run("parent_concurrent.py")
    assert json.loads(result.exit_value) == ["0", "2", "4", "6"]
    assert sorted(c["exit_value"] for c in result.children) == ["0", "2", "4", "6"]


def test_nested_runs_resolve_paths_against_each_callers_folder() -> None:
    result = run("nested_a.py")
    assert result.exit_value == "a:b:8"
    [b] = result.children
    assert b["exit_value"] == "b:8"
    nested = Path(b["output"]).with_name("001-nested_b.children") / "001-child.ipynb"
    assert read_result(nested).exit_value == "8"


def test_fabric_notebookutils_run_multiple_validate_run_exit() -> None:
    result = run("fabric_multi.py")
    out = exit_json(result)
    assert {k: out[k] for k in ("first one", "second", "echo")} == {"first one": "10", "second": "14",
                                                                  "echo": "length 3"}
    assert out["failure"] == {"bad": ["", True], "fine": ["2", False]}
    assert "runMultiple: dependency cycle:" in out["cycle"]
    assert out["run"] == "2"
    assert Path(result.output).with_suffix(".runMultiple").is_dir()


def test_rerun_into_the_same_folder_forgets_old_children(tmp_path: Path) -> None:
    first = run("parent_run.py", output_dir=tmp_path)
    assert len(first.children) == 3
    second = run("parent_run.py", output_path=tmp_path / "parent_run.ipynb", parameters={})
    assert len(second.children) == 3  # the same three, not six
    other = run("child.py", output_dir=tmp_path)
    assert other.children == []
