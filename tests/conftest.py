"""Shared fixtures: a project folder per test, and a check that no process outlives a test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
# Processes nbflow starts: kernels, dbutils.notebook.run children, and cluster servers (Sail, JVM Spark Connect).
MARKERS = ("ipykernel_launcher", "nbflow.child", "pysail spark server", "SparkConnectServer")


def nbflow_processes() -> dict[int, str]:
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        # Only processes run from this checkout's environment: other checkouts on the same machine
        # (their kernels and servers) are not this test run's to judge, nor to kill.
        if sys.prefix in cmdline and any(marker in cmdline for marker in MARKERS):
            found[proc.info["pid"]] = cmdline
    return found


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    before = set(nbflow_processes())
    yield
    deadline = time.monotonic() + 10
    left: dict[int, str] = {}
    while time.monotonic() < deadline:
        left = {pid: cmd for pid, cmd in nbflow_processes().items() if pid not in before}
        if not left:
            return
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    pytest.fail(f"processes left running after the test: {left}")


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test works in its own project folder: processed/, .nbflow/dbfs, secrets."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(root))
    for name in list(os.environ):
        if name.startswith(("NBFLOW_SECRET", "NBFLOW_DBFS_ROOT", "NBFLOW_KERNEL_PYTHON")):
            monkeypatch.delenv(name)
    return root


def run(name: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    from nbflow import run_notebook

    return run_notebook(NOTEBOOKS / name, parameters, **kwargs)


def exit_json(result: Any) -> Any:
    assert result.status == "SUCCESS", (result.status, result.error)
    return json.loads(result.exit_value)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
