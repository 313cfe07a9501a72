"""``spark`` in the kernel: a Spark Connect session of its own, on the project's local cluster,
sharing the project's tables with every other notebook.

``spark`` is attached lazily: a notebook that never touches it pays nothing, and the cluster
starts on first use if it is not running (it then stays up for the next notebooks, as an
all-purpose cluster does). Tables are shared through :class:`nbflow.catalog.Registry`: before
each cell (and before each statement that reads or writes a table) the session attaches tables
that others registered; a statement that creates a table claims its name in the registry first
(see :meth:`Lakehouse.creating`), so two notebooks creating one table at once share it instead of
each writing a private copy; after each cell (and around a ``dbutils.notebook.run``) the session
registers any other table it created and forgets those it dropped.

Tables are Delta unless a format is named, as on Databricks (``spark.sql.sources.default``).
Reading a local path that does not exist fails with Spark's ``PATH_NOT_FOUND`` (an engine may
otherwise return no rows).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import random
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import DEFAULT_SCHEMA, Registry, TableEntry, normalize
from ..errors import ClusterDied, NotebookRuntimeError

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
        self._raw_sql: Callable[..., Any] = lambda statement: None
        self.state: Any = None

    @property
    def attached(self) -> bool:
        return self._spark is not None

    @property
    def local_files(self) -> bool:
        """Whether the engine reads this machine's files (the project's own cluster)."""
        return getattr(self.state, "engine", "") != "external"

    def spark_path(self, path: str) -> str:
        """The local path Spark should use for ``path``: ``dbfs:/x`` is the project's DBFS folder,
        the same one ``dbutils.fs`` uses; any other path is unchanged."""
        if not path.startswith("dbfs:"):
            return path
        from .fs import FsUtils

        return str(FsUtils(self._session.context.dbfs_root).local_path(path))

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
                self._prepare(self._spark)
                atexit.register(self._release)
                self.pull()
            return self._spark

    def _prepare(self, spark: Any) -> None:
        """Databricks' defaults and the catalog's sharing rules on a freshly attached session."""
        if getattr(self.state, "delta", True):  # a JVM engine without Delta's jars keeps Parquet
            with contextlib.suppress(Exception):  # an external cluster may refuse; its own default stands
                spark.conf.set("spark.sql.sources.default", "delta")
        self._raw_sql = spark.sql  # the engine's own, for nbflow's bookkeeping statements
        _retry_conflicting_commits(spark)
        retrying = spark.sql

        from . import delta_commands  # here: it imports this module

        def sql(sqlQuery: str, *args: Any, **kwargs: Any) -> Any:
            answered = delta_commands.run(self, sqlQuery, *args, **kwargs)  # what the engine cannot run
            if answered is not None:
                return answered
            try:
                name = created_table(sqlQuery)
                if name is None:
                    self.pull()
                    return retrying(sqlQuery, *args, **kwargs)
                with self.creating(name):
                    return retrying(sqlQuery, *args, **kwargs)
            except Exception as exc:
                unparsed = delta_commands.unsupported(sqlQuery, exc, getattr(self.state, "engine", ""))
                if unparsed is None:
                    raise
                raise unparsed from None  # one line, not the parser's dump

        spark.sql = sql
        table = spark.table

        def read_table(tableName: str) -> Any:
            self.pull()
            return table(tableName)

        spark.table = read_table
        spark._nbflow_lakehouse = self
        _patch_readers_and_writers()

    @contextlib.contextmanager
    def creating(self, name: str) -> Iterator[None]:
        """Create the table ``name`` as one act across sessions and processes.

        The name is claimed in the registry, the tables others registered are attached (so
        ``IF NOT EXISTS``, ``append`` and "already exists" see the winner's table), the statement
        runs, and the table is registered before the claim is let go.
        """
        key = normalize(name, self._current_schema(name))
        with self._registry.claim(key):
            self.pull(force=True)
            yield
            self._adopt(key)

    def table_entry(self, name: str) -> TableEntry | None:
        """The registered table that ``name`` (as a notebook wrote it) names, if any."""
        self.spark()
        self.pull()
        return self._registry.get(normalize(name, self._current_schema(name)))

    def _current_schema(self, name: str) -> str:
        if "." in name.strip("`"):
            return DEFAULT_SCHEMA  # qualified: the schema is in the name
        try:
            return str(self._spark.catalog.currentDatabase())
        except Exception:
            return DEFAULT_SCHEMA

    def _adopt(self, name: str) -> None:
        """Register the table ``name`` this session just created or replaced (its claim is held)."""
        with self._lock:
            entry = self._describe(name)
            if entry is None:
                return
            known = self._known.get(name)
            if known is not None and known.location == entry.location:
                return  # an existing table, written to: nothing to register
            self._known[name] = self._registry.register(name, entry.location, entry.format, entry.managed)
            if known is None:
                self._created.add(name)

    def _release(self) -> None:
        # Frees the session's state on the server; the server itself stays up.
        with contextlib.suppress(Exception):  # the kernel is exiting; the server may be gone already
            self._spark.stop()

    # -- sharing tables ---------------------------------------------------------------------
    def pull(self, force: bool = False) -> None:
        """Attach tables registered by other notebooks since the last look."""
        if self._spark is None or (not force and self._registry.generation() == self._generation):
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
                    if entry is None:
                        continue
                    standing = self._registry.register_new(name, entry.location, entry.format, entry.managed)
                    if standing.location == entry.location:
                        self._known[name] = standing
                        self._created.add(name)
                    else:
                        self._lost_race(name, entry, standing)
            self.pull()  # what others registered meanwhile

    def _lost_race(self, name: str, mine: TableEntry, standing: TableEntry) -> None:
        # Created by a path nbflow does not see (so not claimed first) while another notebook
        # registered the name: the catalog keeps the registered table. Say so loudly: rows
        # written to this session's copy are not in the catalog's table.
        self._sql(f"DROP TABLE IF EXISTS {_ident(name)}", quiet=True)
        print(
            f"nbflow: table {name} was created here and by another notebook at the same time; the catalog "
            f"keeps the other notebook's table ({standing.location}); this notebook's copy ({mine.location}) "
            "is not in the catalog",
            file=sys.stderr,
        )

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
            return list(self._raw_sql(statement).collect())
        except ClusterDied:
            raise  # not a statement's failure: every later statement would wait on it too
        except Exception:
            if not quiet:
                raise
            return None


# Delta's optimistic commits: a statement that lost the race to another writer applied nothing,
# so running it again (against the new snapshot) is safe. Sail reports the loss as
# "Failed to commit transaction", or, when another writer's commit landed between its read of the
# log and its own write, "Missing commit file: expected version N, found M"; Delta on the JVM as
# Concurrent*Exception.
CONFLICT_MARKERS = ("Failed to commit transaction", "Missing commit file", "ConcurrentAppendException",
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


_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_CREATE_TABLE = re.compile(
    r"(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:EXTERNAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?|REPLACE\s+TABLE\s+)"
    rf"(?P<name>{_IDENT}(?:\s*\.\s*{_IDENT})*)",
    re.IGNORECASE,
)
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)


def created_table(statement: str) -> str | None:
    """The table a SQL statement creates or replaces (``CREATE [OR REPLACE] TABLE``, CTAS,
    ``REPLACE TABLE``), as written; None for any other statement."""
    body = statement[_LEADING_COMMENTS.match(statement).end():]  # type: ignore[union-attr]
    match = _CREATE_TABLE.match(body)
    return re.sub(r"\s*\.\s*", ".", match["name"]) if match else None


def _lakehouse_of(session: Any) -> Lakehouse | None:
    found = getattr(session, "_nbflow_lakehouse", None)
    return found if isinstance(found, Lakehouse) else None


_patched = False


def _patch_readers_and_writers() -> None:
    """Route the DataFrame API's table writes through the catalog's claims, as ``spark.sql`` is.

    Patched on the Spark Connect classes once per kernel; a session nbflow did not prepare
    (no lakehouse on it) behaves as before.
    """
    global _patched
    if _patched:
        return
    from pyspark.sql.connect.catalog import Catalog
    from pyspark.sql.connect.readwriter import DataFrameReader, DataFrameWriter, DataFrameWriterV2

    def creating(method: Callable[..., Any], session_of: Callable[[Any], Any],
                 name_of: Callable[[Any, tuple[Any, ...], dict[str, Any]], str]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            lakehouse = _lakehouse_of(session_of(self))
            if lakehouse is None:
                return method(self, *args, **kwargs)
            with lakehouse.creating(name_of(self, args, kwargs)):
                return method(self, *args, **kwargs)
        return wrapper

    def pulling(method: Callable[..., Any], session_of: Callable[[Any], Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            lakehouse = _lakehouse_of(session_of(self))
            if lakehouse is not None:
                lakehouse.pull()
            return method(self, *args, **kwargs)
        return wrapper

    def first(key: str) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], str]:
        return lambda _self, args, kwargs: str(args[0] if args else kwargs[key])

    def writer_session(w: Any) -> Any:
        return w._spark

    def v2_name(w: Any, _args: tuple[Any, ...], _kwargs: dict[str, Any]) -> str:
        return str(w._table_name)

    load = DataFrameReader.load

    def checked_load(self: Any, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        lakehouse = _lakehouse_of(self._client)
        # Only a local engine reads this machine's files; an external cluster has its own.
        if lakehouse is not None and lakehouse.local_files:
            paths = [path] if isinstance(path, str) else list(path or [])
            mapped = [lakehouse.spark_path(str(one)) for one in paths]
            for given, local in zip(paths, mapped, strict=True):
                _require_path(local, shown=str(given))
            if paths:
                path = mapped[0] if isinstance(path, str) else mapped
        return load(self, path, *args, **kwargs)

    save = DataFrameWriter.save

    def mapped_save(self: Any, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        lakehouse = _lakehouse_of(self._spark)
        if lakehouse is not None and lakehouse.local_files and isinstance(path, str):
            path = lakehouse.spark_path(path)
        return save(self, path, *args, **kwargs)

    patches: list[tuple[type, str, Callable[..., Any]]] = [
        (DataFrameWriter, "saveAsTable", creating(DataFrameWriter.saveAsTable, writer_session, first("name"))),
        (DataFrameWriter, "insertInto", pulling(DataFrameWriter.insertInto, writer_session)),
        (Catalog, "createTable", creating(Catalog.createTable, lambda c: c._sparkSession, first("tableName"))),
        (DataFrameReader, "table", pulling(DataFrameReader.table, lambda r: r._client)),
        (DataFrameReader, "load", checked_load),
        (DataFrameWriter, "save", mapped_save),
    ]
    patches += [(DataFrameWriterV2, verb, creating(getattr(DataFrameWriterV2, verb), writer_session, v2_name))
                for verb in ("create", "replace", "createOrReplace")]
    patches += [(DataFrameWriterV2, verb, pulling(getattr(DataFrameWriterV2, verb), writer_session))
                for verb in ("append", "overwrite", "overwritePartitions")]
    for cls, name, method in patches:
        setattr(cls, name, method)
    _patched = True


def _require_path(path: str, shown: str | None = None) -> None:
    """Spark's ``PATH_NOT_FOUND`` for a local path (or glob) that matches nothing; the message
    names the path as the notebook wrote it (``shown``: ``dbfs:/...`` for a mapped DBFS path).

    Only local paths are checked, and only for the project's own cluster: a remote URI
    (``s3://``...) or a relative path is resolved by the engine, not here.
    """
    local = local_path(path) if path.startswith("file:") else path
    if not local.startswith("/") or "{" in local:
        return
    if any(c in local for c in "*?["):
        if glob.glob(local):
            return
    elif os.path.exists(local):
        return
    from pyspark.errors.exceptions.connect import AnalysisException

    named = shown if shown is not None and shown.startswith("dbfs:") else f"file:{local}"
    raise AnalysisException(
        message=f"[PATH_NOT_FOUND] Path does not exist: {named}. SQLSTATE: 42K03",
        errorClass="PATH_NOT_FOUND",
        messageParameters={"path": named},
        sql_state="42K03",
    )


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
