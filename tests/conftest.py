"""Shared fixtures: a project folder per test, and a check that no process outlives a test."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
# Processes nbflow starts: kernels, dbutils.notebook.run children, plan workers, cluster servers,
# the cluster's pool service and its kernel zygote (whose forked kernels keep its command line).
MARKERS = ("ipykernel_launcher", "nbflow.task_process", "nbflow.worker", "nbflow.run_multiple", "pysail spark server",
           "SparkConnectServer", "nbflow.pool_service", "nbflow.kernel_zygote")


# The test tiers (markers registered in pyproject): what a test starts decides the marker it needs.
# A command line matching a pattern is a process of that kind; `make test-fast` deselects all four.
NEEDS: dict[str, re.Pattern[str]] = {
    "kernel": re.compile(r"ipykernel|nbflow\.pool_service|nbflow\.kernel_zygote"),
    "spark": re.compile(r"pysail"),
    "jvm": re.compile(r"SparkConnectServer|spark-submit|\bjava\b"),
    "serve": re.compile(r"-m nbflow serve\b|\bnbflow serve\b"),
}
TIERS = frozenset(NEEDS)


class Launches:
    """The processes started while a test runs (its fixtures included), seen two ways: an audit
    hook in this interpreter catches every launch from it at once, and a watcher thread, started
    with the first launch, polls this process's descendants for the ones its children start (a
    CLI's kernel, a worker's kernel, a kernel's cluster). Kernels and servers live for seconds,
    the watcher looks every 100 ms, so none goes unseen; a look costs ~1 ms, and only tests that
    start a process at all pay for it.

    An in-process server (``WorkspaceServer`` in a thread) is no process: the serve files carry
    their marker whole."""

    def __init__(self) -> None:
        self.active = False
        self.cmdlines: list[str] = []
        self._before: set[int] = set()
        self._seen: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    def begin(self) -> None:
        self.cmdlines, self._seen = [], set()
        # Not this test's: what earlier tests' fixtures of a wider scope left running.
        with contextlib.suppress(psutil.Error):
            self._before = {child.pid for child in psutil.Process().children(recursive=True)}
        self._stop.clear()
        self.active = True

    def end(self) -> None:
        self.active = False
        if self._watcher is not None:
            self._stop.set()
            self._watcher.join()
            self._watcher = None
            self._look()

    def needs(self) -> set[str]:
        return {tier for tier, pattern in NEEDS.items() if any(pattern.search(c) for c in self.cmdlines)}

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        # Called for every audited event of the interpreter (each open, import...): stay cheap.
        if not self.active or event not in _LAUNCH_EVENTS:
            return
        argv = _LAUNCH_EVENTS[event](args)
        if argv is not None:
            self.cmdlines.append(argv if isinstance(argv, str) else " ".join(map(str, argv)))
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="launch-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self._look()

    def _look(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=True):
                if child.pid in self._before:
                    continue
                # Read again at each look: caught between fork and exec, a kernel still shows its
                # parent's command line.
                with contextlib.suppress(psutil.Error):
                    seen = (child.pid, " ".join(child.cmdline()))
                    if seen not in self._seen:
                        self._seen.add(seen)
                        self.cmdlines.append(seen[1])


_LAUNCH_EVENTS: dict[str, Any] = {
    "subprocess.Popen": lambda a: a[1],
    "os.posix_spawn": lambda a: a[1],
    "os.exec": lambda a: a[1],
    "os.spawn": lambda a: a[2],
    "os.system": lambda a: a[0],
    "os.fork": lambda a: None,
    "os.forkpty": lambda a: None,
}
LAUNCHES = Launches()
sys.addaudithook(LAUNCHES.audit)


@pytest.fixture(autouse=True)
def launch_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test that starts a kernel, a Sail or JVM cluster or an ``nbflow serve`` process
    without that tier's marker: `make test-fast` then starts none, and ``-m "kernel and not spark"``
    means what it says. With ``NBFLOW_TEST_LAUNCH_LOG=<file>`` it fails nothing and writes each
    test's tiers as a JSON line instead (how to find a new file's marks).

    Named to sort first: autouse fixtures of one conftest set up in name order, so this one sees
    the other fixtures' launches (and tears down last)."""
    marked = {mark.name for mark in request.node.iter_markers()} & TIERS
    LAUNCHES.begin()
    try:
        yield
    finally:
        LAUNCHES.end()
    needs = LAUNCHES.needs()
    record = os.environ.get("NBFLOW_TEST_LAUNCH_LOG")
    if record:
        with open(record, "a", encoding="utf-8") as log:
            log.write(json.dumps({"test": request.node.nodeid, "marked": sorted(marked), "needs": sorted(needs),
                                  "cmdlines": LAUNCHES.cmdlines}) + "\n")
        return
    missing = needs - marked
    if missing:
        shown = "\n  ".join(c for c in LAUNCHES.cmdlines if any(NEEDS[t].search(c) for t in missing))
        pytest.fail(f"this test starts what needs the marker(s) {sorted(missing)} (add "
                    f"@pytest.mark.<name> or a module pytestmark):\n  {shown}")


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
    # A cluster's pool service keeps two warm kernels in tests (the machine's size is for users):
    # many tests start a cluster, and each warm kernel costs a fork and a Spark session.
    monkeypatch.setenv("NBFLOW_POOL_SIZE", "2")
    for name in list(os.environ):
        if name.startswith(("NBFLOW_SECRET", "NBFLOW_DBFS_ROOT", "NBFLOW_KERNEL_PYTHON", "NBFLOW_DELTA")) or (
                name == "NBFLOW_SANDBOX"):  # a developer's NBFLOW_SANDBOX=0 would fail the sandbox's tests
            monkeypatch.delenv(name)
    yield root
    cluster.stop(root)


# The cluster engines the Delta and catalog tests run on: Sail, and the JVM engine with delta-spark
# (its own marker, so that the fast lane and a machine without Java leave it out).
ENGINES = ["sail", pytest.param("spark", marks=pytest.mark.jvm)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A JVM test runs its statements on a cold JVM (2-4 minutes on two busy cores): its own time
    # limit, above the suite's 300 s, so that only a hang fails it.
    for item in items:
        if item.get_closest_marker("jvm") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, project: Path) -> str:
    """The cluster engine this test runs on. Its project's cluster is started on that engine
    first, so every notebook the test runs (engine ``auto``) attaches to it."""
    from nbflow.cluster import server as cluster

    cluster.start(project, request.param)
    return str(request.param)


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
