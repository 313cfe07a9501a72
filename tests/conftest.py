"""Shared fixtures: a project folder per test, and a check that no process outlives a test."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
# Processes nbflow starts: kernels, dbutils.notebook.run children, plan workers, cluster servers.
MARKERS = ("ipykernel_launcher", "nbflow.task_process", "nbflow.worker", "nbflow.run_multiple", "pysail spark server",
           "SparkConnectServer")


def nbflow_processes(scope: Path) -> dict[int, str]:
    """nbflow's processes that belong to a test: started with its project folder (under ``scope``).

    Scoped by the project folder in the process environment, so that nbflow processes of other
    work on the machine (another test run, a user's cluster) are neither blamed nor killed.
    """
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if not any(marker in cmdline for marker in MARKERS):
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("NBFLOW_PROJECT_DIR", "").startswith(str(scope)):
                found[proc.info["pid"]] = cmdline
    return found


@pytest.fixture(autouse=True)
def no_orphans(tmp_path: Path) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10
    left: dict[int, str] = {}
    while time.monotonic() < deadline:
        left = nbflow_processes(tmp_path)
        if not left:
            return
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    pytest.fail(f"processes left running after the test: {left}")


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test works in its own project folder: processed/, .nbflow/dbfs, secrets, its cluster.

    A cluster that a notebook of the test started (it outlives notebooks by design) is stopped
    at the end of the test.
    """
    from nbflow.cluster import server as cluster

    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(root))
    for name in list(os.environ):
        if name.startswith(("NBFLOW_SECRET", "NBFLOW_DBFS_ROOT", "NBFLOW_KERNEL_PYTHON", "NBFLOW_DELTA")) or (
                name == "NBFLOW_SANDBOX"):  # a developer's NBFLOW_SANDBOX=0 would fail the sandbox's tests
            monkeypatch.delenv(name)
    yield root
    cluster.stop(root)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a CLI a test interrupts with SIGINT: SIGINT acts, as from a terminal,
    even when the test runner itself was started where SIGINT is ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@functools.lru_cache(maxsize=1)
def gate_available() -> bool:
    """Whether this machine lets nbflow's cluster gate isolate Sail (unprivileged user and network
    namespaces). Where it cannot (a container's seccomp profile, a kernel setting), Sail runs on
    plain TCP and says so; the tests check whichever of the two the machine gives."""
    probe = "from nbflow.cluster import gate; gate.isolate()"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode == 0


def run(name: str | Path, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run a notebook: ``name`` relative to tests/notebooks, or an absolute path."""
    from nbflow import run_notebook

    return run_notebook(NOTEBOOKS / name, parameters, **kwargs)


def source_notebook(path: Path, *cells: str) -> Path:
    """Write a Databricks source notebook of ``cells`` (each dedented) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    separator = "\n\n# COMMAND ----------\n\n"
    path.write_text("# Databricks notebook source\n" + separator.join(textwrap.dedent(c).strip() for c in cells) + "\n")
    return path


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
