"""dbutils.notebook.exit, failing cells, dead kernels and timeouts: statuses, cells, saved notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from nbflow import read_result

from .conftest import run

pytestmark = pytest.mark.kernel


def _outputs_text(path: str, index: int) -> str:
    nb = nbformat.read(path, as_version=4)
    cell = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])][index]
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_exit_ends_the_notebook_successfully_and_skips_later_cells() -> None:
    result = run("exit_early.py")
    assert result.status == "SUCCESS"
    assert result.exit_value == "done early" and not result.exit_truncated
    assert [c["status"] for c in result.cells] == ["completed", "completed", "skipped"]
    assert _outputs_text(result.output, 1).strip() == "Notebook exited: done early"
    assert result.variables["before"]["value"] == 1


def test_exit_inside_try_except_exception_still_exits() -> None:
    result = run("exit_in_try.py")
    assert result.status == "SUCCESS" and result.exit_value == "exited inside try"


def test_exit_value_is_truncated_to_5_mb() -> None:
    result = run("exit_big.py")
    assert result.status == "SUCCESS" and result.exit_truncated
    assert len(result.exit_value) == 5 * 1024 * 1024


def test_exit_rejects_non_strings() -> None:
    result = run("exit_not_string.py")
    assert result.status == "FAILED" and result.error.ename == "TypeError"
    assert "json.dumps" in result.error.evalue


def test_failing_cell_is_reported_by_user_index_and_the_notebook_is_kept() -> None:
    result = run("fails.py")
    assert result.status == "FAILED"
    assert (result.error.cell_index, result.error.ename, result.error.evalue) == (2, "ValueError", "boom in cell 2")
    assert any("boom in cell 2" in line for line in result.error.traceback)
    assert [c["status"] for c in result.cells] == ["completed", "completed", "failed", "skipped"]
    assert Path(result.output).is_file()
    assert result.variables["prepared"]["value"] == "before the failure"
    assert "after" not in result.variables
    assert read_result(result.output).error == result.error


def test_kernel_that_dies_is_a_failure_naming_the_cell() -> None:
    result = run("dies.py")
    assert result.status == "FAILED"
    assert result.error.cell_index == 1 and result.error.ename == "DeadKernelError"
    assert "exit code 3" in result.error.evalue
    assert Path(result.output).is_file()


def test_timeout_stops_the_notebook() -> None:
    result = run("sleeps.py", {"seconds": "30"}, timeout=2)
    assert result.status == "TIMEDOUT"
    assert result.error.cell_index == 1 and result.error.ename == "TimeoutError"
    assert result.duration_s < 15
    assert result.variables["started"]["value"] == "sleeping"  # the kernel was interrupted, then read


def test_display_and_display_html() -> None:
    result = run("display_use.py")
    nb = nbformat.read(result.output, as_version=4)
    mimes = [set(o.get("data", {})) for o in nb.cells[0].outputs]
    assert result.status == "SUCCESS"
    assert any("text/html" in m for m in mimes) and any(m == {"text/plain"} for m in mimes)


def test_timeout_holds_even_when_a_cell_ignores_interrupts() -> None:
    result = run("stubborn.py", timeout=2)
    assert result.status == "TIMEDOUT"
    assert result.duration_s < 12
    assert any("could not read the notebook's variables" in w for w in result.warnings)


def test_kernel_log_is_kept_only_for_a_dead_kernel(tmp_path: Path) -> None:
    run("child.py", output_dir=tmp_path)
    assert not list(tmp_path.glob("*.kernel.log"))
    dead = run("dies.py", output_dir=tmp_path)
    assert dead.status == "FAILED"
