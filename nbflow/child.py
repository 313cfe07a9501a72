"""Entry point of a ``dbutils.notebook.run`` child: ``python -m nbflow.child``.

Reads a JSON request on stdin (notebook, arguments, timeout, output path, the caller's context),
runs the notebook, and prints the task summary as one JSON line on stdout. It watches the
process that started it (the caller's kernel): if that caller dies, the child cancels its
notebook, stops its own kernel and exits, so a killed parent leaves nothing running.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from . import lifecycle
from .errors import NbflowError

if TYPE_CHECKING:
    from .kernels import WarmKernel


def handle(request: dict[str, Any], kernel: WarmKernel | None = None) -> tuple[dict[str, Any], bool]:
    """Run one request; its task summary (also for bad input) and whether the notebook succeeded."""
    from .params import Param
    from .runner import run_notebook

    ctx = request.get("context") or {}
    arguments = {k: Param(v, "dbutils.notebook.run") for k, v in (request.get("arguments") or {}).items()}
    # A plan task sends its parameters with their sources (job parameter, task parameter...).
    arguments.update({k: Param(v, source) for k, (v, source) in (request.get("parameters") or {}).items()})
    try:
        result = run_notebook(
            request["notebook"],
            arguments,
            output_path=request.get("output_path"),
            timeout=request.get("timeout"),
            run_id=ctx.get("run_id") or None,
            task_key=request.get("task_key"),
            output_log=request.get("output_log"),
            context=ctx,
            kernel=kernel,
        )
    except NbflowError as exc:
        return {"status": "FAILED", "output": request.get("output_path"),
                "error": {"cell_index": None, "ename": type(exc).__name__, "evalue": str(exc)}}, False
    return result.task_summary(), result.ok


def main() -> int:
    request = json.loads(sys.stdin.read())
    # Started by a notebook's code (no lifeline): its parent's pid is watched instead. Its own
    # tag marks its kernel and what that starts, for the clean-up of last resort.
    lifecycle.interruptible()
    tag = lifecycle.add_own_tag("child")
    lifecycle.watch(lifecycle.orphan_exit(tag, lifecycle.ORPHAN_GRACE_S))
    summary, ok = handle(request)
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
