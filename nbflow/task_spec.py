"""One notebook to run, as every process on the way sees it: :class:`TaskSpec`.

A spec is built once, by whoever asks for the run: :func:`nbflow.runner.task_spec` for the API
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

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InputError
from .params import Param
from .runtime.context import RunContext


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
