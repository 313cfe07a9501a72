"""What a kernel knows about the run it belongs to, sent by the engine as JSON at start-up."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..project import DBFS


@dataclass
class RunContext:
    notebook_path: str = ""
    output_path: str | None = None
    run_id: str = ""
    task_key: str = ""
    # Widget values bound by the caller (job parameters, -p, dbutils.notebook.run arguments).
    arguments: dict[str, str] = field(default_factory=dict)
    project_dir: str = "."
    dbfs_root: str = str(DBFS)
    secrets_file: str | None = None
    # Task values of upstream tasks, {task_key: {key: value}}; None when not run as a job task.
    job_task_values: dict[str, dict[str, Any]] | None = None
    depth: int = 0
    python: str = ""
    # Cluster engine for a cluster this run starts: auto, sail, spark or sc://host:port.
    engine: str = "auto"
    # Secret values the caller read: a child redacts them too (they may arrive as arguments).
    # Sent to the kernel in memory only, never written.
    redact_values: list[str] = field(default_factory=list)
    # The NBFLOW_SECRET__* variables of the process that started the run. Sent to the kernel in
    # memory only: the kernel's environment does not carry them, so `os.environ`, `%sh env` and
    # the processes a notebook starts do not see them. None: read the kernel's own environment.
    secret_env: dict[str, str] | None = None
    # What survives dbutils.library.restartPython() into the new process (Session.carried()):
    # widgets, task values, the argument names already read. None for a fresh start.
    carried: dict[str, Any] | None = None
    # The run's notebook-scoped Python environment (nbflow.runtime.libraries): made on the first
    # %pip install, shared with dbutils.notebook.run children, removed when the run ends.
    python_env: str = ""
    # The environment of the process that asked for the run, when the notebook runs on a kernel
    # started before it (the cluster's pool service): the kernel takes it over at install.
    # None: the kernel's own environment is the caller's already.
    environ: dict[str, str] | None = None
    # A notebook run by hand in an interactive kernel (nbflow.runtime.interactive), not by a run:
    # exits end the cell with a message, and dbutils.notebook.run shows where its child was saved.
    interactive: bool = False
    # Widget values saved with the notebook (metadata.nbflow_widgets, which nbflow lab
    # saves from the widget panel): what dbutils.widgets.get returns when no argument is bound.
    saved_widgets: dict[str, str] | None = None
    # The folder the kernel runs in; "" (the default, as on Databricks): the notebook's own. Not
    # inherited: a dbutils.notebook.run child runs in its own folder.
    working_dir: str = ""
    # What a dbutils.notebook.run child takes over from its caller.
    INHERITED: ClassVar[tuple[str, ...]] = (
        "run_id", "project_dir", "dbfs_root", "secrets_file", "job_task_values", "python", "depth", "engine",
        "redact_values", "secret_env", "python_env",
    )

    def for_child(self, redact_values: list[str]) -> dict[str, Any]:
        """The context fields a ``dbutils.notebook.run`` child inherits, one level deeper."""
        inherited = {name: getattr(self, name) for name in self.INHERITED}
        return {**inherited, "depth": self.depth + 1, "redact_values": redact_values}

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunContext:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunContext:
        """A context from its fields; fields this version does not know are left out."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
