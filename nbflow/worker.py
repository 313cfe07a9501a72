"""A plan's worker process: ``python -m nbflow.worker OPTIONS_JSON``.

The worker keeps one warm kernel (:class:`nbflow.kernels.WarmKernel`) ready, says so, and runs
the tasks it reads on stdin (a :class:`nbflow.task_spec.TaskSpec` as JSON on each line) one at a
time, each in the kernel that was warm, which is then stopped while the next one warms up. It
speaks JSON lines on its original stdout: ``{"event": "ready"}`` when a kernel is warm,
``{"event": "done", "summary": ...}`` after each task; anything else written to stdout goes to
stderr. It exits at the end of its input, after a cancelled task, or when the process that
started it dies (its lifeline ends, see :mod:`nbflow.lifecycle`): the running notebook is then
cancelled, never reported as a success, and its kernel stopped. Its kernels are stopped in every case.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import IO, Any

from . import lifecycle
from .kernels import WarmKernel
from .task_spec import TaskSpec

Warming = tuple[WarmKernel | None, str | None]  # a kernel, or None and why there is none


def _launch(options: dict[str, Any], live: list[WarmKernel]) -> Warming:
    """Start a kernel process; it imports while the worker does other work. The kernel is in
    ``live`` from the start: an interrupt while it starts must not leave it behind."""
    with lifecycle.deferred_interrupts():
        kernel = WarmKernel(options["project"])
        live.append(kernel)
        try:
            kernel.launch(options["project"])
        except Exception as exc:  # the task then starts its own kernel and reports the failure
            live.remove(kernel)
            kernel.stop(now=True)
            return None, str(exc)
    return kernel, None


def _ready(launched: Warming, options: dict[str, Any]) -> Warming:
    """The launched kernel once its runtime is loaded, or None and why not."""
    kernel, why = launched
    if kernel is None:
        return None, why
    try:
        kernel.ready(options["project"], options["engine"], options["spark"])
    except Exception as exc:  # as above: the task reports a kernel that cannot start
        kernel.stop(now=True)
        return None, str(exc)
    return kernel, None


def _say(protocol: IO[str], message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()


def main() -> int:
    # The pool cancels a task with SIGINT; a worker started by a process that ignores it (a CI
    # script's `nbflow serve &`) inherits the ignoring, and would run its notebook to the end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # a stray print (a library's, a notebook's) must not break the protocol
    options = json.loads(sys.argv[1])
    lifecycle.interruptible()  # the pool's interrupt must work even if SIGINT came in ignored
    orphaned = threading.Event()
    fd = lifecycle.inherited_lifeline()
    if fd is not None:
        on_lost = lifecycle.orphan_exit(lifecycle.own_tag(), lifecycle.ORPHAN_GRACE_S)

        def lost() -> None:
            orphaned.set()
            on_lost()

        lifecycle.watch(lost, fd=fd)
    live: list[WarmKernel] = []  # every kernel not yet stopped: stopped on the way out, whatever happens

    def ready(launched: Warming) -> WarmKernel | None:
        kernel, why = _ready(launched, options)
        _say(protocol, {"event": "ready", "warm": kernel is not None, "why": why,
                        "cluster": None if kernel is None else kernel.cluster,
                        "kernel_dir": None if kernel is None else kernel.socket_dir,
                        "kernel_pid": None if kernel is None else getattr(kernel.km.provisioner, "pid", None)})
        return kernel

    try:
        launched = _launch(options, live)
        # While the kernel process imports, this one imports what runs a task (papermill: ~0.3 s).
        import papermill  # noqa: F401  # lazy: imported while the first kernel starts, not before

        from . import engine  # noqa: F401  # lazy: as papermill, while the kernel starts
        from .task_process import handle  # lazy: the runner and nbformat, while the kernel starts

        kernel = ready(launched)
        for line in sys.stdin:
            if not line.strip():
                continue
            summary, _ok = handle(TaskSpec.from_json(json.loads(line)), kernel)
            if orphaned.is_set():
                return 1  # nobody is listening; the notebook was cancelled
            _say(protocol, {"event": "done", "summary": summary})
            if summary.get("status") == "CANCELED":
                return 130  # the run is stopping: no new kernel
            used = list(live)
            launched = _launch(options, live)  # the next kernel's process imports while the used one stops
            for old in used:
                old.stop(now=summary.get("status") != "SUCCESS")
                live.remove(old)
            kernel = ready(launched)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1  # the pool is gone
    finally:
        # An interrupt now (the pool's, on close) would cut the clean-up short and leave kernels.
        lifecycle.uninterruptible()
        for left in live:
            left.stop(now=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
