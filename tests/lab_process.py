"""``nbflow lab`` started for a test, and stopped with a check that nothing it started is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_lab(project: Path, token: str, env: Mapping[str, str] | None = None,
                extra: Sequence[str] = ()) -> Iterator[str]:
    """A real ``nbflow lab`` for ``project`` on a free port; its URL. On the way out it is
    stopped as a service manager stops it (SIGTERM), and every process it started must be gone."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbflow", "lab", "--no-browser", "--port", str(port), "--",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", *extra],
        cwd=project, env={**os.environ, "NBFLOW_PROJECT_DIR": str(project), **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "nbflow lab never served"
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(children, timeout=20)
        for left in alive:
            left.kill()
        assert not alive, f"left running after nbflow lab stopped: {alive}"
