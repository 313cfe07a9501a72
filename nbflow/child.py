"""Entry point of a ``dbutils.notebook.run`` child: ``python -m nbflow.child``.

Reads a JSON request on stdin (notebook, arguments, timeout, output path, the caller's context),
runs the notebook, and prints the task summary as one JSON line on stdout. It watches the
process that started it: if that caller dies, the child stops its own kernel and exits, so a
killed parent leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import NbflowError

if TYPE_CHECKING:
    from .kernels import WarmKernel


def watch_parent(pid: int) -> None:
    """Interrupt this process when the process that started it dies."""
    while True:
        time.sleep(1.0)
        if os.getppid() != pid:
            os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt: the run cancels and cleans up
            return


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
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    summary, ok = handle(request)
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
