"""The one exception tree of nbflow.

Every error nbflow raises on purpose derives from :class:`NbflowError`. The CLI maps the
``exit_code`` of each branch to the process exit code::

    NbflowError                      (exit 1)
    ├── InputError                   (exit 2: bad usage or bad input, nothing ran)
    │   ├── NotebookNotFound
    │   ├── NotebookFormatError
    │   ├── ParameterError
    │   ├── PlanError                (every problem of a plan, each naming file, line and field)
    │   └── CatalogDamaged       (the table registry file is damaged: rebuild it)
    ├── EnvironmentFailure           (exit 3: the machine could not run the work)
    │   ├── KernelStartError
    │   ├── ClusterDied              (the local cluster's server died under a session)
    │   ├── ClusterStateDamaged      (.nbflow/cluster/state.json cannot be trusted)
    │   └── RemoteError              (a Databricks workspace refused or failed a call)
    └── NotebookRuntimeError         raised inside a kernel by the Databricks runtime
        ├── InputWidgetNotDefined    (also a KeyError: dbutils.widgets.get on an unknown name)
        ├── WorkflowException        (dbutils.notebook.run: the child failed or timed out)
        ├── RunMultipleFailed        (notebookutils.notebook.runMultiple: some notebooks failed)
        ├── TaskValueError           (dbutils.jobs.taskValues misuse; also a ValueError)
        ├── SecretNotFound           (also a KeyError)
        ├── DbfsError                (dbutils.fs failures; also an OSError)
        ├── CatalogBusy              (a table another session is creating for too long)
        ├── CatalogObjectError       (a catalog, schema or volume that does not exist, already
        │                             exists or is not empty; shown to notebooks as Spark's
        │                             AnalysisException with Databricks' error class)
        ├── LibraryInstallError      (%pip or an %environment spec could not install)
        ├── NoSuchElementException   (the notebook context: Scala's None.get, as py4j names it)
        ├── UnboundSqlParameter      (a SQL :name marker no widget or argument answers)
        ├── ReadFilesError           (read_files: a call nbflow cannot read; also a ValueError)
        ├── DeltaCommandFailed       (delta-rs refused a Delta statement nbflow runs for Sail)
        └── ColumnNotExpressible     (a DeltaTable condition Column with no SQL form)

Every class of the tree is defined here, so the drawing is the whole tree (a test checks it),
but one: ``nbflow.runtime.delta_commands.UnsupportedStatement``, a NotebookRuntimeError that is
also pyspark's ``ParseException`` (this module cannot import pyspark).
Errors of the libraries nbflow uses are turned into these where nbflow calls them: the SDK's in
:func:`nbflow.remote.adapter.api_call`, pydantic's in :mod:`nbflow.plan.loading`, YAML's in
:mod:`nbflow.documents`, the kernel's in :mod:`nbflow.engine` (a failed cell is a result, not an
exception); anything else reaching the CLI is reported as an internal error (exit 1).

A notebook that fails is not an exception of nbflow: it is a result with status ``FAILED``.
The CLI turns that result into exit code 1.

All exceptions keep their constructor arguments in ``args`` so they survive pickling across
processes (papermill and nbclient both had to fix unpicklable errors).
"""

from __future__ import annotations

from typing import Any


class NbflowError(Exception):
    """Root of every error nbflow raises on purpose."""

    exit_code = 1


class InputError(NbflowError):
    """Bad usage or bad input, found before anything ran."""

    exit_code = 2


class NotebookNotFound(InputError):
    """A notebook path that does not name an existing notebook."""


class NotebookFormatError(InputError):
    """A file that is not a notebook, or a notebook that cannot be parsed."""


class ParameterError(InputError):
    """A parameter given with bad syntax or a bad value."""


class EnvironmentFailure(NbflowError):
    """The machine could not run the work (no kernel, no interpreter...)."""

    exit_code = 3


class KernelStartError(EnvironmentFailure):
    """A Jupyter kernel could not be started."""


class ClusterDied(EnvironmentFailure):
    """The project's local cluster died (or stopped answering) while a session used it."""


class ClusterStateDamaged(EnvironmentFailure):
    """The cluster's state file is damaged; the message names it, what is wrong and the repair."""


class NotebookRuntimeError(NbflowError):
    """Raised inside a notebook kernel by nbflow's Databricks runtime."""


class InputWidgetNotDefined(NotebookRuntimeError, KeyError):
    """``dbutils.widgets.get`` (or ``remove``) of a widget that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        # Databricks shows the Java class name in the message; user code tests for it.
        return f"com.databricks.dbutils_v1.InputWidgetNotDefined: No input widget named {self.name} is defined"


class WorkflowException(NotebookRuntimeError):
    """``dbutils.notebook.run`` could not return an exit value: the child failed or timed out.

    Attributes: ``path`` (the child notebook), ``status`` (``FAILED``/``TIMEDOUT``/``CANCELED``),
    ``error`` (the child's failing cell as ``{"cell_index", "ename", "evalue"}`` or None) and
    ``output_path`` (the child's executed notebook, kept for inspection).
    """

    def __init__(
        self,
        message: str,
        path: str = "",
        status: str = "FAILED",
        error: dict[str, Any] | None = None,
        output_path: str | None = None,
    ) -> None:
        super().__init__(message, path, status, error, output_path)
        self.message = message
        self.path = path
        self.status = status
        self.error = error
        self.output_path = output_path

    def __str__(self) -> str:
        return self.message


class TaskValueError(NotebookRuntimeError, ValueError):
    """A task value that is not JSON, too large, or looked up where it does not exist."""


class SecretNotFound(NotebookRuntimeError, KeyError):
    """``dbutils.secrets.get`` of a scope or key that the local secret store does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "secret not found"


class DbfsError(NotebookRuntimeError, OSError):
    """A ``dbutils.fs`` operation that failed (missing path, existing file, directory without recurse)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "dbutils.fs error"


class CatalogDamaged(InputError):
    """The project's table registry cannot be trusted (damaged file); the message says how to rebuild it."""


class CatalogBusy(NotebookRuntimeError):
    """A table's name stayed claimed by another session (creating that table) for too long."""


class CatalogObjectError(NotebookRuntimeError):
    """A Unity Catalog object (catalog, schema, volume) that is missing, already there, not empty
    or read-only. ``error_class`` is Databricks' name for the condition (``SCHEMA_NOT_FOUND``...)."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(error_class, message)
        self.error_class = error_class
        self.message = message

    def __str__(self) -> str:
        return f"[{self.error_class}] {self.message}"


class PlanError(InputError):
    """A plan that cannot run; ``problems`` holds every ``FILE:LINE: path: message`` found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)  # one argument, the list: a pickled PlanError comes back whole
        self.problems = problems

    def __str__(self) -> str:
        more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        return self.problems[0] + more


class RemoteError(EnvironmentFailure):
    """The workspace refused or failed a call; the message names the call and the API's error."""


class LibraryInstallError(NotebookRuntimeError):
    """``%pip`` or an ``%environment`` spec could not install what it was asked to."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class NoSuchElementException(NotebookRuntimeError):
    """Scala's ``None.get`` / ``Map.apply`` of a missing key, named as py4j reports it."""


class UnboundSqlParameter(NotebookRuntimeError):
    """A ``:name`` marker that no widget and no argument answers (Spark's UNBOUND_SQL_PARAMETER)."""


class RunMultipleFailed(NotebookRuntimeError):
    """One or more notebooks of ``runMultiple`` failed; ``result`` holds every notebook's outcome."""

    def __init__(self, message: str, result: dict[str, dict[str, Any]]) -> None:
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


class ReadFilesError(NotebookRuntimeError, ValueError):
    """A ``read_files`` call nbflow cannot read: the message names the call and the problem."""


class DeltaCommandFailed(NotebookRuntimeError):
    """delta-rs refused a command nbflow runs for a statement (the message says which and why)."""


class ColumnNotExpressible(NotebookRuntimeError):
    """A Column (in a DeltaTable condition or assignment) that has no SQL form."""
