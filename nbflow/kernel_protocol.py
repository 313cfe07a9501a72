"""The kernel protocol: everything nbflow says to a kernel besides the notebook's own cells.

The engine (:mod:`nbflow.engine`) and a kernel started ahead of its task
(:class:`nbflow.kernels.WarmKernel`) talk to the runtime in the kernel,
:mod:`nbflow.runtime.kernel`, through the calls below, each a *silent* execute: not in the
kernel's history, no output the notebook would show, its answer read from the execute reply on
the shell channel (nbclient reads iopub for the cells; a silent execute sends nothing there).

- **preload** (a warm kernel, before it has a task): import the runtime, and attach a Spark
  Connect session when the plan uses Spark; the reply says which cluster it attached to.
- **bootstrap** (first thing for every notebook): install the runtime with the run's context.
- **prepare environment**: install the notebook's environment specs' dependencies, before its
  first cell.
- **restart context** (``dbutils.library.restartPython()``): the context the next Python process
  takes over, read before the kernel restarts.
- **state** (at the end): the run's exit value, variables, widgets and task values, as JSON.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import sys
import time
from typing import Any

from .errors import KernelStartError

RUNTIME_MODULE = "nbflow.runtime.kernel"  # the kernel's end of this protocol
BOOTSTRAP_TIMEOUT_S = 60.0
RESTART_TIMEOUT_S = 60.0
# Asked of a warm kernel that attached Spark: which cluster server (nbflow.cluster.attach.attached()).
ATTACHED = "__import__('nbflow.cluster.attach', fromlist=['attached']).attached()"


def kernel_python() -> str:
    """The interpreter kernels run on: ``NBFLOW_KERNEL_PYTHON``, else this one."""
    return os.environ.get("NBFLOW_KERNEL_PYTHON") or sys.executable


def runtime_call(function: str, *args: Any) -> str:
    """Code that calls ``function(*args)`` of the kernel's runtime; the arguments are literals."""
    return f"__import__({RUNTIME_MODULE!r}, fromlist=[{function!r}]).{function}({', '.join(map(repr, args))})"


async def silent(kc: Any, code: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    """Run ``code`` silently and return the kernel's execute reply; ``queue.Empty`` if none
    comes within ``timeout`` seconds."""
    msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False, **kwargs)
    deadline = time.monotonic() + timeout
    while True:
        reply: dict[str, Any] = await kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            return reply


def _require_loaded(reply: dict[str, Any]) -> None:
    content = reply["content"]
    if content.get("status") != "ok":
        raise KernelStartError(f"nbflow's runtime failed to load in the kernel ({kernel_python()}): "
                               f"{content.get('ename')}: {content.get('evalue')}")


def _expression(reply: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = reply["content"].get("user_expressions", {}).get(name, {})
    return result


def _value(result: dict[str, Any]) -> Any:
    """The Python literal a user expression evaluated to (its ``text/plain`` repr)."""
    return ast.literal_eval(result.get("data", {}).get("text/plain", "None"))


async def preload(kc: Any, project: str, engine: str, spark: bool, timeout: float) -> dict[str, Any] | None:
    """Import the runtime in a kernel started ahead of its task (and attach Spark if ``spark``);
    the cluster server it attached to, if it did."""
    expressions = {"cluster": ATTACHED} if spark else {}
    reply = await silent(kc, runtime_call("preload", project, engine, spark), timeout, user_expressions=expressions)
    _require_loaded(reply)
    attached = _expression(reply, "cluster")
    if attached.get("status") == "ok":
        try:
            value = _value(attached)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, dict) else None
    return None


async def bootstrap(kc: Any, context_json: str, timeout: float = BOOTSTRAP_TIMEOUT_S) -> None:
    """Install the runtime for a run (``context_json``: its :class:`~nbflow.runtime.context.RunContext`)."""
    try:
        reply = await silent(kc, runtime_call("install", context_json), timeout)
    except queue.Empty:
        raise KernelStartError(f"the kernel ({kernel_python()}) did not answer within {timeout:g} s") from None
    _require_loaded(reply)


async def prepare_environment(kc: Any, specs: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Install the dependencies of the notebook's environment specs; the execute reply's content
    (``status`` "ok", or the error's ``ename``/``evalue``). ``queue.Empty`` on timeout."""
    reply = await silent(kc, runtime_call("prepare_environment", json.dumps(specs)), timeout)
    content: dict[str, Any] = reply["content"]
    return content


async def restart_context(kc: Any) -> str:
    """The context (JSON) the notebook's next Python process takes over after ``restartPython()``."""
    reply = await silent(kc, "", RESTART_TIMEOUT_S, user_expressions={"context": runtime_call("restart_json")})
    result = _expression(reply, "context")
    if result.get("status") != "ok":
        raise KernelStartError(f"restartPython: the runtime could not hand over its state: "
                               f"{result.get('ename')}: {result.get('evalue')}")
    return str(_value(result))


async def state(kc: Any, timeout: float) -> dict[str, Any]:
    """The run's end state (see :meth:`nbflow.runtime.session.Session.state`); RuntimeError if the
    runtime cannot say, ``queue.Empty`` if the kernel does not answer in time."""
    import asyncio  # lazy: commands that only name the kernels' interpreter need no event loop

    for _attempt in range(5):
        reply = await silent(kc, "", timeout, user_expressions={"state": runtime_call("state_json")})
        # After an interrupt the kernel aborts requests queued behind the stopped cell.
        if reply["content"].get("status") != "aborted":
            break
        await asyncio.sleep(0.1)
    result = _expression(reply, "state")
    if result.get("status") != "ok":
        raise RuntimeError(f"{result.get('ename')}: {result.get('evalue')}")
    value: dict[str, Any] = json.loads(_value(result))
    return value
