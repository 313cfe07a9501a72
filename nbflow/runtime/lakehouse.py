"""``spark`` in the kernel: a Spark Connect session of its own, on the project's local cluster,
sharing the project's tables with every other notebook.

``spark`` is attached lazily: a notebook that never touches it pays nothing, and the cluster
starts on first use if it is not running (it then stays up for the next notebooks, as an
all-purpose cluster does). Tables are shared through :class:`nbflow.catalog.Registry`: before
each cell the session attaches tables that others registered; after each cell (and around a
``dbutils.notebook.run``) it registers the tables it created and forgets those it dropped.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import Registry, TableEntry, normalize
from ..errors import NotebookRuntimeError

if TYPE_CHECKING:
    from .session import Session

NO_SPARK_CONTEXT = (
    "sc (SparkContext) and RDD APIs are not available: nbflow attaches notebooks through Spark Connect, "
    "as Databricks serverless and shared clusters do; use the DataFrame and SQL APIs (spark.*)"
)


# A session attached before the kernel had a task (see :func:`preattach`): (key, state, session).
_preattached: tuple[tuple[str, str], Any, Any] | None = None


def preattach(project_dir: str, engine: str) -> None:
    """Start the cluster if needed and attach a session ahead of the task (a warm kernel).

    A failure is not reported here: the notebook that uses ``spark`` attaches again and reports it.
    """
    global _preattached
    from .. import cluster

    try:
        state = cluster.ensure_running(Path(project_dir), engine)
        _preattached = ((project_dir, engine), state, cluster.attach(state))
    except Exception:  # reported, if it matters, by the notebook that uses spark
        return
    atexit.register(_release_preattached)


def _release_preattached() -> None:
    # The task never used spark: free the session on the server (the server stays up).
    if _preattached is not None:
        with contextlib.suppress(Exception):
            _preattached[2].stop()


class Lakehouse:
    """The kernel's Spark session and its view of the project's tables."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._spark: Any = None
        self._lock = threading.RLock()
        self._registry = Registry(session.context.project_dir)
        self._generation = -1
        self._known: dict[str, TableEntry] = {}  # tables this session has, by schema.table
        self._created: set[str] = set()  # ... of which this session created these
        self.state: Any = None

    @property
    def attached(self) -> bool:
        return self._spark is not None

    def spark(self) -> Any:
        """The session, attaching (and starting the cluster) on first use."""
        global _preattached
        with self._lock:
            if self._spark is None:
                from .. import cluster

                ctx = self._session.context
                warm, _preattached = _preattached, None
                if warm is not None and warm[0] == (ctx.project_dir, ctx.engine):
                    self.state, self._spark = warm[1], warm[2]
                else:
                    self.state = cluster.ensure_running(Path(ctx.project_dir), ctx.engine)
                    self._spark = cluster.attach(self.state)
                _retry_conflicting_commits(self._spark)
                atexit.register(self._release)
                self.pull()
            return self._spark

    def _release(self) -> None:
        # Frees the session's state on the server; the server itself stays up.
        with contextlib.suppress(Exception):  # the kernel is exiting; the server may be gone already
            self._spark.stop()

    # -- sharing tables ---------------------------------------------------------------------
    def pull(self) -> None:
        """Attach tables registered by other notebooks since the last look."""
        if self._spark is None or self._registry.generation() == self._generation:
            return
        with self._lock:
            self._generation = self._registry.generation()
            registered = self._registry.tables()
            for name, known in list(self._known.items()):
                entry = registered.get(name)
                if entry is not None and entry.location == known.location:
                    continue
                # Dropped or re-created elsewhere. Only a table this session attached by location
                # is dropped here (that keeps its data); one it created itself is left alone, so
                # that no engine deletes a folder another notebook may be using.
                if name not in self._created:
                    self._sql(f"DROP TABLE IF EXISTS {_ident(name)}", quiet=True)
                    del self._known[name]
            for name, entry in registered.items():
                if name in self._known:
                    continue
                self._sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(entry.schema)}", quiet=True)
                if self._sql(
                    f"CREATE TABLE IF NOT EXISTS {_ident(name)} USING {entry.format} "
                    f"LOCATION {_string(entry.location)}",
                    quiet=True,
                ) is not None:
                    self._known[name] = entry

    def push(self) -> None:
        """Register the tables this session created, and unregister those it dropped."""
        if self._spark is None:
            return
        with self._lock:
            present = self._session_tables()
            if present is None:
                return  # could not list the catalog: change nothing rather than guess
            for name in [n for n in self._known if n not in present]:
                known = self._known.pop(name)
                self._created.discard(name)
                entry = self._registry.unregister(name, known.location)
                if entry is not None and entry.managed:
                    self._remove_data(entry)
            for name in present:
                if name not in self._known:
                    entry = self._describe(name)
                    if entry is not None:
                        self._known[name] = self._registry.register(
                            name, entry.location, entry.format, entry.managed
                        )
                        self._created.add(name)
            self.pull()  # what others registered meanwhile

    def _session_tables(self) -> set[str] | None:
        names: set[str] = set()
        spark = self._spark
        try:
            for db in spark.catalog.listDatabases():
                for table in spark.catalog.listTables(db.name):
                    if not table.isTemporary and (table.tableType or "").upper() != "VIEW":
                        names.add(normalize(f"{db.name}.{table.name}"))
        except Exception:
            return None
        return names

    def _describe(self, name: str) -> TableEntry | None:
        rows = self._sql(f"DESCRIBE TABLE EXTENDED {_ident(name)}", quiet=True)
        if not rows:
            return None
        facts = {str(r[0]).strip(): str(r[1]).strip() for r in rows if r[0]}
        location = facts.get("Location", "")
        if not location:
            return None
        location = local_path(location)
        if not location.startswith("/"):
            location = str(Path(self.state.warehouse).parent / location)
        managed = facts.get("Type", "MANAGED").upper() == "MANAGED"
        return TableEntry(name, location, facts.get("Provider", "delta") or "delta", managed, "")

    def _remove_data(self, entry: TableEntry) -> None:
        # Only inside the warehouse: a managed table's folder, never a user's path.
        warehouse = Path(self.state.warehouse).resolve()
        location = Path(entry.location).resolve()
        if warehouse in location.parents:
            shutil.rmtree(location, ignore_errors=True)

    def _sql(self, statement: str, quiet: bool = False) -> list[Any] | None:
        try:
            return list(self._spark.sql(statement).collect())
        except Exception:
            if not quiet:
                raise
            return None


# Delta's optimistic commits: a statement that lost the race to another writer applied nothing,
# so running it again (against the new snapshot) is safe. Sail reports the loss as
# "Failed to commit transaction"; Delta on the JVM as Concurrent*Exception.
CONFLICT_MARKERS = ("Failed to commit transaction", "ConcurrentAppendException",
                    "ConcurrentModificationException", "ConcurrentDeleteReadException",
                    "ConcurrentDeleteDeleteException", "ConcurrentTransactionException")
DML = ("MERGE", "UPDATE", "DELETE", "INSERT")
COMMIT_ATTEMPTS = 6


def _retry_conflicting_commits(spark: Any) -> None:
    """Make ``spark.sql`` retry a DML statement that lost a concurrent Delta commit."""
    original = spark.sql

    def sql(sqlQuery: str, *args: Any, **kwargs: Any) -> Any:
        retryable = sqlQuery.lstrip().upper().startswith(DML)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return original(sqlQuery, *args, **kwargs)
            except Exception as exc:
                if not retryable or not any(m in str(exc) for m in CONFLICT_MARKERS):
                    raise
                if attempt == COMMIT_ATTEMPTS:
                    raise NotebookRuntimeError(
                        f"Delta commit conflict: another writer kept committing to the same table; "
                        f"gave up after {COMMIT_ATTEMPTS} attempts ({str(exc).splitlines()[0][:200]})"
                    ) from exc
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")

    spark.sql = sql


def local_path(location: str) -> str:
    """``file:/x`` or ``file:///x`` → ``/x``; other locations unchanged."""
    if location.startswith("file:"):
        return "/" + location[len("file:"):].lstrip("/")
    return location


def _string(text: str) -> str:
    """A SQL string literal (Spark SQL treats backslash as an escape)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    """A quoted SQL identifier for ``schema.table`` (backticks inside names are doubled)."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


class LazySpark:
    """Stands for ``spark`` until first use; then the kernel's namespace gets the real session."""

    def __init__(self, lakehouse: Lakehouse, namespace: dict[str, Any]) -> None:
        self._lakehouse = lakehouse
        self._namespace = namespace

    def _resolve(self) -> Any:
        real = self._lakehouse.spark()
        if self._namespace.get("spark") is self:
            self._namespace["spark"] = real
        return real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __repr__(self) -> str:
        return "<spark: a Spark Connect session, attached on first use>"


class NoSparkContext:
    """``sc``: Spark Connect has no SparkContext; say so on any use."""

    def __getattr__(self, name: str) -> Any:
        raise NotebookRuntimeError(NO_SPARK_CONTEXT)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotebookRuntimeError(NO_SPARK_CONTEXT)

    def __repr__(self) -> str:
        return "<sc: not available through Spark Connect>"
