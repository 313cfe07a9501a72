"""The kernel's end of the kernel protocol (:mod:`nbflow.kernel_protocol` is the engine's end).

The engine calls :func:`install` once, right after the kernel starts, with the run's context
as JSON; it puts ``dbutils``, ``display``, ``displayHTML`` and ``getArgument`` in the user
namespace, registers the Databricks magics, and arms output redaction for secrets. At the end
of the run the engine asks :func:`state_json` for the exit value, variables and task values.
A kernel started ahead of its task imports this module through :func:`preload`.

This module and what it imports are the runtime a kernel loads: nothing heavy (pyspark, pandas,
nbformat, deltalake are imported when first used), and nothing of nbflow's own machinery (the
scheduler, plans, papermill, nbclient, click, pydantic): the kernel must start about as fast as
a plain one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from IPython import get_ipython

from . import coverage_hook, delta_shim, fabric, magics, mlflow_local, modules
from .active import activate, current
from .context import RunContext
from .display import display, displayHTML, spark_call, udf
from .lakehouse import LazySpark, NoSparkContext, SqlContext, preattach
from .libraries import environment_dependencies
from .secrets import secret_env
from .session import Session


def preload(project_dir: str, engine: str, spark: bool) -> None:
    """Prepare a kernel started ahead of its task (importing this module imported what
    :func:`install` needs) and, for a plan that uses Spark, attach a Spark Connect session now
    (the notebook adopts it)."""
    if spark:
        preattach(project_dir, engine)


# A kernel's own variables, kept when it takes over its caller's environment: its process
# tree and lifeline, its sandbox, those ipykernel sets for a notebook (pager, colours, plots).
_KERNEL_OWN = ("NBFLOW_TREE", "NBFLOW_LIFELINE", "NBFLOW_OUTLIVES_RUN", "NBFLOW_SANDBOX", "JPY_", "PYDEVD_",
               "MPLBACKEND", "CLICOLOR", "PAGER", "GIT_PAGER", "TERM")


def take_environment(environ: dict[str, str]) -> None:
    """The caller's environment as the notebook's (a kernel started before the run, by the pool
    service, has the service's): what the caller set, or set otherwise, is set here. Variables
    only the service had stay (the service was started from the same project)."""
    for name, value in environ.items():
        if not name.startswith(_KERNEL_OWN) and os.environ.get(name) != value:
            os.environ[name] = value


def install(context_json: str) -> None:
    """Set up the Databricks runtime in the running IPython kernel."""
    setup(get_ipython(), RunContext.from_json(context_json))


def setup(shell: Any, context: RunContext) -> Callable[[], None]:
    """Set up the Databricks runtime in ``shell`` for ``context``; returns what takes it out again
    (``%unload_ext nbflow``): the names, magics, hooks and output redaction it added."""
    if context.secret_env is None:
        context.secret_env = secret_env()
    # Whatever way this kernel was started, the notebook's own environment (os.environ, %sh,
    # the processes it starts) does not carry the secrets: the runtime has them in memory.
    for name in secret_env():
        os.environ.pop(name, None)
    if context.environ is not None:
        take_environment(context.environ)
    coverage_hook.start()  # before the notebook imports anything (pytest --nbflow-cov)
    session = Session(context)
    activate(session)
    if context.carried:
        session.restore(context.carried)
    # A notebook runs in its own folder (a warm kernel started elsewhere), unless its run names one.
    folder = session.context.working_dir or os.path.dirname(session.context.notebook_path)
    if folder and os.path.isdir(folder):
        os.chdir(folder)
    # Its folder and its Git folder's root first on sys.path, then its run's %pip libraries.
    session.libraries.activate()
    mlflow_local.configure(context.project_dir)
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
    modules.install(session, names)
    names.update(fabric.install(session, shell.user_ns))
    shell.user_ns.update(names)
    shell.user_ns_hidden.update(names)
    session.namespace_objects = {id(value) for value in names.values()}
    undo_magics = magics.register(shell, session)
    # Tables written by other notebooks appear before a cell; this cell's are shared after it.
    shimmed = delta_shim.install()

    def pull(*_: Any) -> None:
        session.lakehouse.pull()

    def push(*_: Any) -> None:
        session.lakehouse.push()

    shell.events.register("pre_run_cell", pull)
    shell.events.register("post_run_cell", push)
    undo_redaction = _redact_outputs(shell, session)

    def undo() -> None:
        for name, value in names.items():
            if shell.user_ns.get(name) is value:
                del shell.user_ns[name]
            shell.user_ns_hidden.pop(name, None)
        undo_magics()
        for event, callback in (("pre_run_cell", pull), ("post_run_cell", push)):
            with contextlib.suppress(ValueError):
                shell.events.unregister(event, callback)
        undo_redaction()
        if shimmed:
            delta_shim.uninstall()
        session.lakehouse.close()

    return undo


def _redact_outputs(shell: Any, session: Session) -> Callable[[], None]:
    """Wrap the kernel's message sender so every output is redacted before it leaves; returns
    what unwraps it."""
    kernel = getattr(shell, "kernel", None)
    sender = getattr(kernel, "session", None)
    if sender is None or getattr(sender, "_nbflow_redacting", False):
        return lambda: None
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

    def undo() -> None:
        if sender.send is send:
            sender.send = original
            sender._nbflow_redacting = False

    return undo


def prepare_environment(specs_json: str) -> None:
    """Install the dependencies of the notebook's environment specs (its ``%environment`` cells,
    an ``.ipynb`` export's ``environmentMetadata``) before its first cell, as Databricks builds a
    serverless notebook's environment before running it."""
    session = current()
    for spec in json.loads(specs_json):
        session.libraries.environment(environment_dependencies(spec, session.dbutils.fs.local_path))


def restart_json() -> str:
    """The context for this notebook's next Python process after ``restartPython()``: the same
    run, with what Databricks keeps across the restart (see :meth:`Session.carried`)."""
    session = current()
    context = replace(session.context, carried=session.carried(), redact_values=session.redactor.values())
    coverage_hook.save()  # this process ends here; the next one measures on
    return context.to_json()


def state_json() -> str:
    """The run's end state for the engine, as JSON (see :meth:`Session.state`)."""
    coverage_hook.save()
    shell = get_ipython()
    session = current()
    state = session.state(shell.user_ns, shell.user_ns_hidden)
    if state["exit"] is not None:
        state["exit"]["value"] = session.redactor.text(state["exit"]["value"])
    return json.dumps(state, default=str)


__all__ = ["current", "install", "preload", "prepare_environment", "restart_json", "state_json"]
