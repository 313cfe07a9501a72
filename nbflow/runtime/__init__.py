"""nbflow's Databricks runtime, imported inside each notebook kernel.

The engine calls :func:`install` once, right after the kernel starts, with the run's context
as JSON; it puts ``dbutils``, ``display``, ``displayHTML`` and ``getArgument`` in the user
namespace, registers the Databricks magics, and arms output redaction for secrets. At the end
of the run the engine asks :func:`state_json` for the exit value, variables and task values.

This package imports nothing heavy: the kernel must start about as fast as a plain one.
"""

from __future__ import annotations

import json
from typing import Any

from .context import RunContext
from .notebook import NotebookExit
from .session import Session

__all__ = ["NotebookExit", "RunContext", "Session", "current", "install", "preload", "state_json"]

_session: Session | None = None


def current() -> Session:
    """The runtime session of this kernel (installs a default one outside nbflow)."""
    global _session
    if _session is None:
        _session = Session(RunContext())
    return _session


def preload(project_dir: str, engine: str, spark: bool) -> None:
    """Prepare a kernel started ahead of its task: import what :func:`install` needs and, for a
    plan that uses Spark, attach a Spark Connect session now (the notebook adopts it)."""
    from . import delta_shim, fabric, lakehouse, magics  # noqa: F401 - imported now, not during the task

    if spark:
        lakehouse.preattach(project_dir, engine)


def install(context_json: str) -> None:
    """Set up the Databricks runtime in the running IPython kernel."""
    global _session
    import os

    from IPython import get_ipython

    from .secrets import secret_env

    shell = get_ipython()
    context = RunContext.from_json(context_json)
    if context.secret_env is None:
        context.secret_env = secret_env()
    # Whatever way this kernel was started, the notebook's own environment (os.environ, %sh,
    # the processes it starts) does not carry the secrets: the runtime has them in memory.
    for name in secret_env():
        os.environ.pop(name, None)
    session = Session(context)
    _session = session
    folder = os.path.dirname(session.context.notebook_path)
    if folder and os.path.isdir(folder):
        os.chdir(folder)  # a notebook runs in its own folder (a warm kernel started elsewhere)
    from .lakehouse import LazySpark, NoSparkContext

    names = {
        "dbutils": session.dbutils,
        "display": display,
        "displayHTML": displayHTML,
        "getArgument": session.dbutils.widgets.getArgument,
        "spark": LazySpark(session.lakehouse, shell.user_ns),
        "sc": NoSparkContext(),
    }
    from . import fabric

    names.update(fabric.install(session, shell.user_ns))
    shell.user_ns.update(names)
    shell.user_ns_hidden.update(names)
    from . import magics

    magics.register(shell, session)
    # Tables written by other notebooks appear before a cell; this cell's are shared after it.
    from . import delta_shim

    delta_shim.install()
    shell.events.register("pre_run_cell", lambda *_: session.lakehouse.pull())
    shell.events.register("post_run_cell", lambda *_: session.lakehouse.push())
    _redact_outputs(shell, session)


def _redact_outputs(shell: Any, session: Session) -> None:
    """Wrap the kernel's message sender so every output is redacted before it leaves."""
    kernel = getattr(shell, "kernel", None)
    sender = getattr(kernel, "session", None)
    if sender is None or getattr(sender, "_nbflow_redacting", False):
        return
    original = sender.send
    redactor = session.redactor

    def send(stream: Any, msg_or_type: Any, content: Any = None, *args: Any, **kwargs: Any) -> Any:
        if redactor.active:
            if isinstance(msg_or_type, dict):
                msg_or_type = {**msg_or_type, "content": redactor.deep(msg_or_type.get("content"))}
            else:
                content = redactor.deep(content)
        return original(stream, msg_or_type, content, *args, **kwargs)

    sender.send = send
    sender._nbflow_redacting = True


DISPLAY_ROWS = 1000


def display(*objs: Any, **kwargs: Any) -> None:
    """Databricks' ``display``: a table for a DataFrame (first 1000 rows), rich output otherwise."""
    from IPython.display import display as ipython_display

    for obj in objs:
        if _is_spark_dataframe(obj):
            import pandas as pd

            frame = obj.limit(DISPLAY_ROWS + 1).toPandas()
            with pd.option_context("display.max_rows", DISPLAY_ROWS, "display.min_rows", DISPLAY_ROWS):
                ipython_display(frame.head(DISPLAY_ROWS), **kwargs)
            if len(frame) > DISPLAY_ROWS:
                print(f"(showing the first {DISPLAY_ROWS} rows)")
        else:
            ipython_display(obj, **kwargs)


def _is_spark_dataframe(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pyspark.sql")


def displayHTML(html: str) -> None:
    """Databricks' ``displayHTML``: render an HTML string."""
    from IPython.display import HTML
    from IPython.display import display as ipython_display

    ipython_display(HTML(html))


def state_json() -> str:
    """The run's end state for the engine, as JSON (see :meth:`Session.state`)."""
    from IPython import get_ipython

    shell = get_ipython()
    session = current()
    state = session.state(shell.user_ns, shell.user_ns_hidden)
    if state["exit"] is not None:
        state["exit"]["value"] = session.redactor.text(state["exit"]["value"])
    return json.dumps(state, default=str)
