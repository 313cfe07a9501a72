"""Running nbflow work out of the kernel: one process, one JSON request in, one JSON line out.

``dbutils.notebook.run`` (``python -m nbflow.task_process``) and Fabric's ``runMultiple``
(``python -m nbflow.run_multiple``) both hand their work to a process of their own: the kernel
then imports neither the engine nor the scheduler, and what that process starts (kernels, plan
workers) belongs to it. The process watches its caller and stops when the caller dies; here,
an interrupt of the calling cell stops it, and a backstop stops one that outlives its timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

STOP_GRACE_S = 15.0  # how long an interrupted child gets to stop what it started before it is killed


@dataclass(frozen=True)
class ChildOutcome:
    reply: dict[str, Any] | None  # the last JSON line the child printed; None if there is none
    timed_out: bool  # stopped by the backstop
    stderr_tail: str  # the last line of its stderr, or its exit code: why there is no reply


def call(module: str, request: dict[str, Any], python: str | None = None, backstop: float | None = None,
         stop_grace: float = STOP_GRACE_S) -> ChildOutcome:
    """Run ``python -m module`` with ``request`` on stdin and read its reply.

    An interrupt of the caller (Ctrl-C, an interrupted cell) or the ``backstop`` expiring sends
    the child SIGINT, waits ``stop_grace`` seconds for it to stop what it started, then kills
    it; the interrupt is then raised again.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [python or sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Out of the kernel's process group: an interrupt of the kernel must reach the child
        # once, through the handler below, not twice (a second SIGINT would cut its clean-up).
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(request, default=str), timeout=backstop)
    except BaseException:
        # Timeout backstop, or the caller was interrupted: stop the child, which stops its kernels.
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=stop_grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if time.monotonic() - started >= (backstop or float("inf")):
            return ChildOutcome(None, True, "")
        raise
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        reply = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        reply = None
    if isinstance(reply, dict):
        return ChildOutcome(reply, False, "")
    tail = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
    return ChildOutcome(None, False, tail)
