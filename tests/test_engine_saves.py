"""The executed notebook is saved on a time budget, at the end, and on failure or a signal.

Saving the whole notebook at each cell's start and end (papermill's way) made many-cell notebooks
quadratic; these tests check what the budgeted saves must still keep: every cell's metadata in
the final notebook, and partial output on disk while a cell runs, when it fails, and when the run
is stopped by SIGTERM or killed outright.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbflow.results import read_result

from .conftest import run

pytestmark = pytest.mark.kernel

HEADER = "# Databricks notebook source\n"
SEPARATOR = "\n# COMMAND ----------\n"


def _source(folder: Path, name: str, cells: list[str]) -> Path:
    path = folder / f"{name}.py"
    path.write_text(HEADER + SEPARATOR.join(cells) + "\n")
    return path


def _saved(path: Path) -> dict[str, Any] | None:
    """The notebook on disk, or None while it is missing or (mid-write) not whole JSON."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError):
        return None


def _text(cell: dict[str, Any]) -> str:
    """A cell's printed output (a print may arrive as several stream messages)."""
    return "".join("".join(out.get("text", "")) for out in cell.get("outputs", []))


def _wait_for_text(path: Path, text: str, within: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        nb = _saved(path)
        if nb is not None and text in json.dumps([cell.get("outputs") for cell in nb["cells"]]):
            return nb
        time.sleep(0.1)
    return None


def test_every_cell_keeps_its_metadata_in_the_final_notebook(tmp_path: Path) -> None:
    source = _source(tmp_path, "many", [f"x = {i}" for i in range(300)] + ["print(x)"])
    result = run_source(source, tmp_path / "out")
    assert result.status == "SUCCESS"
    nb = _saved(Path(result.output))
    assert nb is not None and len(nb["cells"]) == 301
    for cell in nb["cells"]:
        meta = cell["metadata"]["papermill"]
        assert meta["status"] == "completed", meta
        assert meta["start_time"] and meta["end_time"] and meta["duration"] is not None
        assert meta["exception"] is False
    assert _text(nb["cells"][-1]) == "299\n"
    assert nb["metadata"]["papermill"]["end_time"]
    assert len(read_result(result.output).cells) == 301  # nbflow's own per-cell timings


def test_a_failing_notebook_is_saved_with_its_partial_output_and_cell_states(tmp_path: Path) -> None:
    cells = [f"print({i})" for i in range(40)] + ["raise ValueError('boom')"] + [f"y = {i}" for i in range(20)]
    result = run_source(_source(tmp_path, "fails", cells), tmp_path / "out")
    assert result.status == "FAILED" and result.error is not None and result.error.ename == "ValueError"
    nb = _saved(Path(result.output))
    assert nb is not None
    cells = [c for c in nb["cells"] if "papermill-error-cell-tag" not in c["metadata"].get("tags", [])]  # banners
    states = [cell["metadata"]["papermill"]["status"] for cell in cells]
    assert states == ["completed"] * 40 + ["failed"] + ["skipped"] * 20
    assert [_text(cell) for cell in cells[:40]] == [f"{i}\n" for i in range(40)]


def run_source(source: Path, output_dir: Path) -> Any:
    return run(str(source), output_dir=output_dir)  # conftest.run joins onto NOTEBOOKS; absolute wins


def _start(source: Path, output_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nbflow", "run", str(source), "--output-dir", str(output_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_output_of_a_running_cell_reaches_disk_and_survives_a_kill(tmp_path: Path) -> None:
    # One cell prints, then waits: no message arrives while it waits, yet what it printed is saved
    # within the budget (papermill saved it only with the next message, at most every 30 s).
    source = _source(tmp_path, "slow",
                     ["print('before')", "import time\nprint('partial', flush=True)\ntime.sleep(120)"])
    out = tmp_path / "out"
    proc = _start(source, out, {"NBFLOW_SAVE_INTERVAL": "0.5"})
    try:
        nb = _wait_for_text(out / "slow.ipynb", "partial", within=60)
        assert nb is not None, "the running cell's output never reached the saved notebook"
    finally:
        proc.kill()  # the run gets no chance to save again: what is on disk is what a crash leaves
        proc.communicate(timeout=30)
        _kill_kernels_of(proc.pid)
    nb = _saved(out / "slow.ipynb")
    assert nb is not None  # whole JSON: saves replace the file at once, never leave half a file
    assert nb["cells"][0]["metadata"]["papermill"]["status"] == "completed"
    assert nb["cells"][1]["metadata"]["papermill"]["status"] == "running"
    assert "partial" in json.dumps(nb["cells"][1]["outputs"])
    assert nb["metadata"]["nbflow"]["status"] == "RUNNING"


def test_sigterm_stops_the_run_and_saves_the_notebook(tmp_path: Path) -> None:
    source = _source(tmp_path, "term", ["print('first')", "import time\nprint('waiting', flush=True)\ntime.sleep(120)",
                                        "print('never')"])
    out = tmp_path / "out"
    proc = _start(source, out)
    try:
        assert _wait_for_text(out / "term.ipynb", "waiting", within=60) is not None
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr  # 128 + SIGTERM, as the README says
    result = read_result(out / "term.ipynb")
    assert result.status == "CANCELED"
    nb = _saved(out / "term.ipynb")
    assert nb is not None
    cells = [c for c in nb["cells"] if "papermill-error-cell-tag" not in c["metadata"].get("tags", [])]
    assert [c["metadata"]["papermill"]["status"] for c in cells] == ["completed", "failed", "skipped"]
    assert "waiting" in json.dumps(cells[1]["outputs"])
    assert nb["metadata"]["papermill"]["end_time"]


def _kill_kernels_of(pid: int) -> None:
    """A SIGKILLed nbflow cannot stop its kernel; the test does (the kernel notices its parent
    die only later)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline", "ppid"]):
        if proc.info["ppid"] == pid:
            proc.kill()
