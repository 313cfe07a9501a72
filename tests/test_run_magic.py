"""%run: another notebook inline, in the same namespace, with widget arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import exit_json, run

pytestmark = pytest.mark.kernel


def test_run_includes_share_the_namespace_and_take_widget_arguments() -> None:
    result = run("run_include.py")
    assert exit_json(result) == {"first": "HI THERE WORLD!", "second": "HELLO AGAIN!", "suffix": "!"}
    assert result.variables["SUFFIX"]["value"] == "!"  # defined by a nested include
    assert "shout" not in result.variables  # functions are not variables


def test_run_with_parent_relative_path() -> None:
    assert run("sub/run_parent_dir.py").exit_value == "!!!"


def test_failure_inside_an_included_notebook_fails_the_cell() -> None:
    result = run("run_include_fails.py")
    assert result.status == "FAILED"
    assert (result.error.cell_index, result.error.ename) == (0, "KeyError")
    assert any("child_fails.py [cell 1]" in line for line in result.error.traceback)


def test_ipynb_exported_from_databricks_runs_its_magics() -> None:
    result = run("databricks_export.ipynb")
    assert result.exit_value == "ok!"


def test_run_cycle_is_reported() -> None:
    result = run("run_cycle_a.py")
    assert result.status == "FAILED"
    assert "%run cycle:" in result.error.evalue and "run_cycle_b.py" in result.error.evalue


def test_skip_cells_and_the_skip_execution_and_raises_exception_tags(tmp_path: Path) -> None:
    import nbformat

    from nbflow import run_notebook

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seen = []"),
        nbformat.v4.new_code_cell("%skip\nseen.append('skip magic')"),  # Databricks' %skip
        nbformat.v4.new_code_cell("seen.append('tag')", metadata={"tags": ["skip-execution"]}),
        nbformat.v4.new_code_cell("raise ValueError('expected')", metadata={"tags": ["raises-exception"]}),
        nbformat.v4.new_code_cell("dbutils.notebook.exit(','.join(seen) or 'nothing')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "skips.ipynb")
    result = run_notebook(tmp_path / "skips.ipynb", output_dir=tmp_path / "out")
    assert result.ok, result.error
    assert result.exit_value == "nothing"
