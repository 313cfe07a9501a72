"""One notebook to run, as every process on the way sees it: :class:`TaskSpec`.

A spec is built once, by whoever asks for the run: :func:`task_spec` for the API
and the CLI, the scheduler for each attempt of a plan's task, and ``dbutils.notebook.run`` in a
kernel for a child.
It crosses process boundaries as JSON (to a plan's worker, to the child process); the runner
completes it where the notebook runs (:func:`nbflow.runner.run_task`: the output path's default,
the context's notebook fields) and hands it to the papermill engine as one keyword.

This module imports only the standard library, :mod:`nbflow.errors`, :mod:`nbflow.params` and
:mod:`nbflow.runtime.context` (standard library underneath; params reads a parameters file's
YAML lazily), so a kernel may import it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import params as params_mod
from .errors import InputError
from .kernel_protocol import kernel_python
from .params import Param
from .project import dbfs_root, processed_dir, project_dir, secrets_file
from .runtime.context import RunContext
from .runtime.secrets import secret_env


@dataclass(frozen=True)
class TaskSpec:
    """What to run, with what, where its outputs go, and the run it belongs to.

    ``context`` is the run's context (project, DBFS, secrets, interpreter, cluster engine, upstream
    task values, nesting depth...); its notebook fields (``notebook_path``, ``output_path``,
    ``task_key``, ``arguments``) are set from this spec when the notebook runs. ``output_path``
    None: ``processed/<run id>/<notebook stem>.ipynb`` in the context's project. ``kernel_log``
    None: beside the executed notebook. ``output_log``: a file for the notebook's printed output.
    """

    notebook: str
    context: RunContext = field(default_factory=RunContext)
    task_key: str | None = None
    parameters: Mapping[str, Param] = field(default_factory=dict)
    timeout: float | None = None
    output_path: str | None = None
    output_log: str | None = None
    kernel_log: str | None = None

    def recorded_parameters(self) -> dict[str, dict[str, Any]]:
        """The parameters as the executed notebook records them: ``{name: {value, source}}``."""
        return {name: {"value": p.value, "source": p.source} for name, p in self.parameters.items()}

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data (parameter values must be JSON values, as job parameters are)."""
        return {
            "notebook": self.notebook,
            "task_key": self.task_key,
            "parameters": self.recorded_parameters(),
            "timeout": self.timeout,
            "output_path": self.output_path,
            "output_log": self.output_log,
            "kernel_log": self.kernel_log,
            "context": asdict(self.context),
        }

    @classmethod
    def from_json(cls, data: Any) -> TaskSpec:
        """A spec from :meth:`to_json` data; InputError names what is wrong with other data."""
        if not isinstance(data, Mapping) or not isinstance(data.get("notebook"), str):
            raise InputError(f"task spec: expected an object with a 'notebook' path, got {str(data)[:200]!r}")
        try:
            parameters = {str(name): Param(entry["value"], str(entry["source"]))
                          for name, entry in (data.get("parameters") or {}).items()}
            context = RunContext.from_dict(data.get("context") or {})
            timeout = data.get("timeout")
            return cls(
                notebook=data["notebook"],
                context=context,
                task_key=data.get("task_key"),
                parameters=parameters,
                timeout=None if timeout is None else float(timeout),
                output_path=data.get("output_path"),
                output_log=data.get("output_log"),
                kernel_log=data.get("kernel_log"),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"task spec for {data['notebook']}: {type(exc).__name__}: {exc}") from None


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_context(engine_name: str = "auto", inherited: Mapping[str, Any] | None = None) -> RunContext:
    """The context of a run started from this process: its project's folders and secrets, the
    kernels' interpreter, the cluster engine; ``inherited`` fields (those a caller passes on, see
    ``RunContext.INHERITED``: a plan run's id and upstream task values...) win."""
    project = project_dir()
    ctx = RunContext(
        project_dir=str(project),
        dbfs_root=str(dbfs_root(project)),
        secrets_file=None if (found := secrets_file(project)) is None else str(found),
        python=kernel_python(),
        engine=engine_name,
        secret_env=secret_env(),
    )
    if inherited:
        ctx = dataclasses.replace(ctx, **{k: v for k, v in inherited.items() if k in RunContext.INHERITED})
    return ctx


def task_spec(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path | None = None,
    output_path: str | Path | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    task_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    engine_name: str = "auto",
    output_log: str | Path | None = None,
) -> TaskSpec:
    """The spec of a notebook run as :func:`run_notebook`'s arguments describe it (see there);
    ``context`` holds fields of a caller's :class:`RunContext` that the run inherits."""
    source = Path(path)
    run_id = run_id or new_run_id()
    if output_path is None:
        folder = Path(output_dir) if output_dir is not None else processed_dir(project_dir()) / run_id
        output_path = folder / (source.stem + ".ipynb")
    return TaskSpec(
        notebook=str(source),
        context=run_context(engine_name, {"run_id": run_id, **(context or {})}),
        task_key=task_key,
        parameters=params_mod.from_mapping(parameters, "api"),
        timeout=timeout,
        output_path=str(output_path),
        output_log=None if output_log is None else str(output_log),
    )
