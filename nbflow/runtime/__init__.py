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

__all__ = ["NotebookExit", "RunContext", "Session", "current", "install", "preload", "prepare_environment",
           "state_json"]

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
    if context.carried:
        session.restore(context.carried)
    folder = os.path.dirname(session.context.notebook_path)
    if folder and os.path.isdir(folder):
        os.chdir(folder)  # a notebook runs in its own folder (a warm kernel started elsewhere)
    # Its folder and its Git folder's root first on sys.path, then its run's %pip libraries.
    session.libraries.activate()
    from . import mlflow_local

    mlflow_local.configure(context.project_dir)
    from .lakehouse import LazySpark, NoSparkContext, SqlContext

    spark = LazySpark(session.lakehouse, shell.user_ns)
    # What Databricks puts in a notebook's namespace (the names databricks.sdk.runtime exports).
    names = {
        "dbutils": session.dbutils,
        "display": display,
        "displayHTML": displayHTML,
        "getArgument": session.dbutils.widgets.getArgument,
        "spark": spark,
        "sc": NoSparkContext(),
        "sqlContext": SqlContext(spark),
        "sql": spark_call(spark, "sql"),
        "table": spark_call(spark, "table"),
        "udf": udf,
    }
    from . import modules

    modules.install(session, names)
    from . import fabric

    names.update(fabric.install(session, shell.user_ns))
    shell.user_ns.update(names)
    shell.user_ns_hidden.update(names)
    session.namespace_objects = {id(value) for value in names.values()}
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
# display()'s keyword arguments that mean something to IPython; Databricks' own (streamName,
# trigger, checkpointLocation, chart settings...) are accepted and ignored (README).
IPYTHON_DISPLAY_KWARGS = {"include", "exclude", "metadata", "transient", "display_id", "raw", "clear"}


def display(*objs: Any, **kwargs: Any) -> None:
    """Databricks' ``display``: a table for a Spark or pandas DataFrame (first 1000 rows), a PNG
    for a matplotlib figure, rich output otherwise; ``display()`` shows nothing."""
    from IPython.display import display as ipython_display

    options = {k: v for k, v in kwargs.items() if k in IPYTHON_DISPLAY_KWARGS}
    for obj in objs:
        if _is_spark_dataframe(obj):
            _show_table(obj.limit(DISPLAY_ROWS + 1).toPandas(), options)
        elif _is_a(obj, "pandas.core.frame", "DataFrame"):
            _show_table(obj, options)
        elif _is_a(obj, "matplotlib.figure", "Figure"):
            import io

            from IPython.display import Image

            png = io.BytesIO()
            obj.savefig(png, format="png", bbox_inches="tight")
            ipython_display(Image(data=png.getvalue(), format="png"), **options)
        else:
            ipython_display(obj, **options)


def _show_table(frame: Any, options: dict[str, Any]) -> None:
    import pandas as pd
    from IPython.display import display as ipython_display

    with pd.option_context("display.max_rows", DISPLAY_ROWS, "display.min_rows", DISPLAY_ROWS):
        ipython_display(frame.head(DISPLAY_ROWS), **options)
    if len(frame) > DISPLAY_ROWS:
        print(f"(showing the first {DISPLAY_ROWS} rows)")


def _is_a(obj: Any, module: str, name: str) -> bool:
    """Whether ``obj`` is an instance of ``module.name`` (or a subclass), without importing it."""
    return any(k.__name__ == name and k.__module__ == module for k in type(obj).__mro__)


def _is_spark_dataframe(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pyspark.sql")


def displayHTML(html: str) -> None:
    """Databricks' ``displayHTML``: render an HTML string."""
    from IPython.display import HTML
    from IPython.display import display as ipython_display

    ipython_display(HTML(html))


def udf(*args: Any, **kwargs: Any) -> Any:
    """``udf`` in a Databricks notebook: pyspark's (imported on first use: pyspark is heavy)."""
    from pyspark.sql.functions import udf as pyspark_udf

    return pyspark_udf(*args, **kwargs)


def spark_call(spark: Any, method: str) -> Any:
    """``sql``/``table`` in a Databricks notebook: the session's method, without attaching the
    session before it is called."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(spark, method)(*args, **kwargs)

    call.__name__ = method
    call.__doc__ = f"spark.{method}(...) of the notebook's session."
    return call


def prepare_environment(specs_json: str) -> None:
    """Install the dependencies of the notebook's environment specs (its ``%environment`` cells,
    an ``.ipynb`` export's ``environmentMetadata``) before its first cell, as Databricks builds a
    serverless notebook's environment before running it."""
    session = current()
    for spec in json.loads(specs_json):
        session.libraries.environment(environment_dependencies(session, spec))


def environment_dependencies(session: Session, spec: dict[str, Any]) -> list[str]:
    """An environment spec's pip requirement lines, its ``base_environment`` file's first."""
    from pathlib import Path

    from .libraries import dependencies_of

    base = spec.get("base_environment")
    base_file = None
    if isinstance(base, str) and base.strip().endswith((".yaml", ".yml")):
        base_file = Path(base.strip())
        if not base_file.exists():  # /Workspace/... or /Volumes/... outside a sandbox
            base_file = session.dbutils.fs.local_path(base.strip())
    return dependencies_of(spec, base_file=base_file)


def restart_json() -> str:
    """The context for this notebook's next Python process after ``restartPython()``: the same
    run, with what Databricks keeps across the restart (see :meth:`Session.carried`)."""
    from dataclasses import replace

    session = current()
    context = replace(session.context, carried=session.carried(), redact_values=session.redactor.values())
    return context.to_json()


def state_json() -> str:
    """The run's end state for the engine, as JSON (see :meth:`Session.state`)."""
    from IPython import get_ipython

    shell = get_ipython()
    session = current()
    state = session.state(shell.user_ns, shell.user_ns_hidden)
    if state["exit"] is not None:
        state["exit"]["value"] = session.redactor.text(state["exit"]["value"])
    return json.dumps(state, default=str)
