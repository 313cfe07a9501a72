"""The Databricks runtime of one kernel: ``dbutils`` and its state for the current run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..catalog import Registry
from ..errors import NotebookRuntimeError
from .capture import capture_variables
from .context import RunContext
from .fs import FsUtils
from .help import methods
from .jobs import JobsUtils
from .lakehouse import Lakehouse
from .libraries import Libraries
from .library import LibraryUtils
from .notebook import NotebookUtils
from .paths import DatabricksPaths
from .secrets import Redactor, SecretsUtils
from .widgets import WidgetsUtils


class DBUtils:
    """``dbutils`` as a Databricks notebook sees it: widgets, notebook, jobs, fs, secrets, library."""

    UTILITIES = ("fs", "jobs", "library", "notebook", "secrets", "widgets")

    def __init__(self, session: Session) -> None:
        ctx = session.context
        self.widgets = WidgetsUtils(ctx.arguments, ctx.saved_widgets)
        self.notebook = NotebookUtils(session)
        self.jobs = JobsUtils(ctx.job_task_values, session.redactor.deep)
        self.fs = FsUtils(ctx.dbfs_root, DatabricksPaths(ctx.project_dir, ctx.dbfs_root, Registry(ctx.project_dir)))
        self.secrets = SecretsUtils(ctx.secrets_file, session.redactor, ctx.secret_env)
        self.library = LibraryUtils()
        self.entry_point = self.notebook.entry_point  # both ways reach it on Databricks

    def help(self, utility: str = "") -> None:
        """What nbflow's dbutils offers: each utility with its methods (``help("fs")``: one utility)."""
        if utility:
            if utility not in self.UTILITIES:
                print(f"dbutils has no utility {utility!r}; it offers: {', '.join(self.UTILITIES)}")
                return
            getattr(self, utility).help()
            return
        print("dbutils (nbflow local runtime); dbutils.<utility>.help() describes one, "
              "dbutils.<utility>.help(\"method\") one method")
        for name in self.UTILITIES:
            print(f"  {name}: {', '.join(methods(getattr(self, name)))}")
        print("  jobs.taskValues: " + ", ".join(methods(self.jobs.taskValues)))

    def __repr__(self) -> str:
        return "<dbutils (nbflow local runtime)>"


class Session:
    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.redactor = Redactor()
        for value in context.redact_values:
            self.redactor.add(value)
        self.exit_value: str | None = None
        self.exit_truncated = False
        # The %run includes running now, outermost first (a %run runs within one cell).
        self._includes: list[str] = []
        self.dbutils = DBUtils(self)
        self.lakehouse = Lakehouse(self)
        self.libraries = Libraries(context.notebook_path, context.project_dir, context.python_env)
        # The objects the runtime put in the notebook's namespace (set by nbflow.runtime.kernel.install).
        self.namespace_objects: set[int] = set()

    def current_notebook(self) -> str:
        """The notebook a ``%run`` path is relative to: the innermost include, else the notebook."""
        return self._includes[-1] if self._includes else self.context.notebook_path

    @contextmanager
    def including(self, path: str) -> Iterator[None]:
        chain = [self.context.notebook_path, *self._includes]
        if path in chain:
            cycle = " -> ".join([*chain[chain.index(path):], path])
            raise NotebookRuntimeError(f"%run cycle: {cycle}")
        self._includes.append(path)
        try:
            yield
        finally:
            self._includes.pop()

    def runtime_objects(self) -> set[int]:
        """The runtime's own objects, never captured as user variables even under a user's name:
        ``dbutils`` and its utilities, the namespace's names, and the Spark session once attached
        (``spark`` is then the session, not the stand-in the namespace started with)."""
        d = self.dbutils
        objects = [d, d.widgets, d.notebook, d.jobs, d.jobs.taskValues, d.fs, d.secrets, d.library, d.entry_point, self]
        if self.lakehouse.attached:
            objects.append(self.lakehouse.spark())
        return {id(o) for o in objects} | self.namespace_objects

    def carried(self) -> dict[str, Any]:
        """What ``dbutils.library.restartPython()`` keeps, as on Databricks where widgets and
        task values live outside the Python process: the widgets, the task values set, which
        arguments were read (for the unused-parameter warning), and the tables written so far."""
        widgets = self.dbutils.widgets
        return {
            "widgets": [{"kind": w.kind, "name": w.name, "default": w.default, "choices": list(w.choices),
                         "label": w.label} for w in widgets.live()],
            "task_values": self.dbutils.jobs.taskValues.values,
            "used": sorted(widgets.used),
            "environments": self.libraries.environments,
            "tables_written": sorted(self.lakehouse.written),
        }

    def restore(self, carried: dict[str, Any]) -> None:
        """Take over what the process before ``restartPython()`` kept (see :meth:`carried`)."""
        widgets = self.dbutils.widgets
        for w in carried.get("widgets") or []:
            if w["kind"] == "text":
                widgets.text(w["name"], w["default"], w["label"])
            else:
                getattr(widgets, w["kind"])(w["name"], w["default"], w["choices"], w["label"])
        widgets.used = set(carried.get("used") or [])
        self.dbutils.jobs.taskValues.values.update(carried.get("task_values") or {})
        self.libraries.environments = list(carried.get("environments") or [])
        self.lakehouse.written.update(carried.get("tables_written") or [])

    def state(self, namespace: dict[str, Any], hidden: dict[str, Any]) -> dict[str, Any]:
        """What the engine records in the executed notebook at the end of the run."""
        widgets = self.dbutils.widgets
        return {
            "exit": None if self.exit_value is None else {"value": self.exit_value, "truncated": self.exit_truncated},
            "variables": capture_variables(namespace, hidden, self.runtime_objects(), self.redactor.deep),
            "task_values": self.redactor.deep(self.dbutils.jobs.taskValues.values),
            "tables_written": sorted(self.lakehouse.written),
            "widgets": widgets.snapshot(),
            "unused_arguments": widgets.unused_arguments(),
            # Names only: the engine blanks these parameters in what it records.
            "secret_arguments": sorted(
                name for name, value in self.context.arguments.items() if self.redactor.text(value) != value
            ),
        }
