"""One notebook in a process of its own: ``python -m nbflow.task_process``, the child process
behind ``dbutils.notebook.run``; :func:`handle` also runs each task of a plan's worker.

The process reads a :class:`nbflow.task_spec.TaskSpec` as JSON on stdin, runs the notebook, and
prints the task summary as one JSON line on stdout. It watches the process that started it (the
caller's kernel): if that caller dies, it cancels its notebook, stops its own kernel and exits,
so a killed parent leaves nothing running.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from . import lifecycle
from .errors import NbflowError
from .kernels import WarmKernel
from .runner import run_task
from .runs import FAILED, CellError
from .task_spec import TaskSpec


def handle(spec: TaskSpec, kernel: WarmKernel | None = None) -> tuple[dict[str, Any], bool]:
    """Run one spec; its task summary (also for bad input) and whether the notebook succeeded."""
    try:
        result = run_task(spec, kernel=kernel)
    except NbflowError as exc:
        return _failure(exc, spec.output_path), False
    return result.task_summary(), result.ok


def _failure(exc: Exception, output: str | None) -> dict[str, Any]:
    """The task summary of a run that could not start (bad input, a kernel that would not start)."""
    return {"status": FAILED.value, "output": output, "error": CellError(None, type(exc).__name__, str(exc)).summary()}


def main() -> int:
    # Started by a notebook's code (no lifeline): its parent's pid is watched instead. Its own
    # tag marks its kernel and what that starts, for the clean-up of last resort.
    lifecycle.interruptible()
    tag = lifecycle.add_own_tag("child")
    lifecycle.watch(lifecycle.orphan_exit(tag, lifecycle.ORPHAN_GRACE_S))
    try:
        spec = TaskSpec.from_json(json.loads(sys.stdin.read()))
    except (NbflowError, ValueError) as exc:
        print(json.dumps(_failure(exc, None)))
        return 1
    summary, ok = handle(spec)
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
