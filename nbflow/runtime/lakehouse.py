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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import sandbox
from ..catalog import DEFAULT_CATALOG, Registry, TableEntry, normalize, qualify, split_name
from ..errors import CatalogObjectError, ClusterDied, NotebookRuntimeError
from .entry_point import spark_conf
from .read_files import replace_read_files
from .sql_text import LEADING_COMMENTS, local_path, quote, sql_string
from .unity import CatalogMap, UnityCatalog, name_chains, object_error, patch_catalog_api

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
    from ..cluster import attach as cluster_attach  # lazy: heavy, and rare in a kernel (start-up)
    from ..cluster import server as cluster_server  # lazy: heavy, and rare in a kernel (start-up)

    try:
        state = cluster_server.ensure_running(Path(project_dir), engine)
        _preattached = ((project_dir, engine), state, cluster_attach.attach(state))
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
        self._volumes_generation = -1  # the registry's generation /Volumes last followed
        self._known: dict[str, TableEntry] = {}  # tables this session has, by catalog.schema.table
        self._created: set[str] = set()  # ... of which this session created these
        self.written: set[str] = set()  # tables (registry names) this session created or wrote to
        self._schemas: set[str] = set()  # registered schemas (catalog.schema) this session has
        self._dirty = False  # set by a statement nbflow does not follow (it may have created or dropped tables)
        self._unattachable: dict[str, str] = {}  # tables whose attach failed, by location
        self._raw_sql: Callable[..., Any] = lambda statement: None
        self.catalogs = CatalogMap(native={DEFAULT_CATALOG})
        self.unity = UnityCatalog(self)
        self.state: Any = None

    @property
    def attached(self) -> bool:
        return self._spark is not None

    @property
    def local_files(self) -> bool:
        """Whether the engine reads this machine's files (the project's own cluster)."""
        return getattr(self.state, "engine", "") != "external"

    def spark_path(self, path: str, writing: bool = False) -> str:
        """The local path Spark should use for ``path``: Databricks' paths (``dbfs:/``,
        ``/Volumes``, ``/dbfs``, ``/Workspace``, root-relative) are the project's folders, the
        same ones ``dbutils.fs`` uses (:mod:`nbflow.runtime.paths`); ``writing`` into a volume
        that does not exist fails as on Databricks."""
        try:
            return self._session.dbutils.fs.local_path_for_spark(path, writing)
        except CatalogObjectError as exc:
            raise object_error(exc) from None

    def local_location(self, location: str) -> str:
        """A ``LOCATION`` as a local folder (external volumes and tables)."""
        mapped = self.spark_path(location)
        return local_path(mapped) if mapped.startswith("file:") else mapped

    def spark(self) -> Any:
        """The session, attaching (and starting the cluster) on first use."""
        global _preattached
        with self._lock:
            if self._spark is None:
                from ..cluster import attach as cluster_attach  # lazy: heavy, and rare in a kernel (start-up)
                from ..cluster import server as cluster_server  # lazy: heavy, and rare in a kernel (start-up)

                ctx = self._session.context
                warm, _preattached = _preattached, None
                if warm is not None and warm[0] == (ctx.project_dir, ctx.engine):
                    self.state, spark = warm[1], warm[2]
                else:
                    self.state = cluster_server.ensure_running(Path(ctx.project_dir), ctx.engine)
                    spark = cluster_attach.attach(self.state)
                try:
                    self._prepare(spark)
                except BaseException:
                    # A session that could not be prepared is never handed out half-made.
                    with contextlib.suppress(Exception):
                        spark.stop()
                    raise
                self._spark = spark
                atexit.register(self._release)
                self.pull()
            return self._spark

    def _prepare(self, spark: Any) -> None:
        """Databricks' defaults and the catalog's sharing rules on a freshly attached session."""
        if getattr(self.state, "delta", True):  # a JVM engine without Delta's jars keeps Parquet
            with contextlib.suppress(Exception):  # an external cluster may refuse; its own default stands
                spark.conf.set("spark.sql.sources.default", "delta")
        with contextlib.suppress(Exception):  # an external cluster may refuse them: notebooks then see its own
            spark.conf._set_all(configs=spark_conf(self._session), silent=True)  # one round trip
        self._raw_sql = spark.sql  # the engine's own, for nbflow's bookkeeping statements
        engine_catalogs = self._sql("SHOW CATALOGS", quiet=True) or []
        self.catalogs = CatalogMap.from_engine([str(row[0]) for row in engine_catalogs])
        self.unity.start()
        _retry_conflicting_commits(spark)
        retrying = spark.sql

        from . import delta_commands  # lazy: imports pyspark (start-up)

        def sql(sqlQuery: str, *args: Any, **kwargs: Any) -> Any:
            answered = self.unity.answer(sqlQuery)  # catalogs, schemas, volumes: the registry's
            if answered is None:
                answered = delta_commands.run(self, sqlQuery, *args, **kwargs)  # what the engine cannot run
            if answered is None:
                try:
                    answered = self._run_statement(retrying, sqlQuery, *args, **kwargs)
                except Exception as exc:
                    unparsed = delta_commands.unsupported(sqlQuery, exc, getattr(self.state, "engine", ""))
                    if unparsed is None:
                        raise
                    raise unparsed from None  # one line, not the parser's dump
            target = written_table(sqlQuery)
            if target is not None:
                self.wrote(target)
            return answered

        spark.sql = sql
        table = spark.table

        def read_table(tableName: str) -> Any:
            self.need([self.key(tableName)])
            return table(self.engine_table(tableName))

        spark.table = read_table
        spark._nbflow_lakehouse = self
        _patch_readers_and_writers()
        patch_catalog_api(_lakehouse_of)

    def _run_statement(self, run: Callable[..., Any], sqlQuery: str, *args: Any, **kwargs: Any) -> Any:
        """Run a statement on the engine, with the tables it names attached, its catalog names
        the engine's, the table it creates claimed, and the table it drops or renames followed."""
        self.need_statement(sqlQuery)
        listed = shown_tables(sqlQuery)
        if listed is not None:
            shown = (".".join(qualify(listed, self.unity.catalog, levels=2)) if listed
                     else f"{self.unity.catalog}.{self.unity.schema}")
            self.need_schema(shown)
            others = self.unity.others(*shown.split(".", 1))
            if others:  # an engine with one catalog lists other catalogs' tables of that schema too
                from pyspark.sql import functions  # lazy: pyspark is heavy (kernel start-up)

                shows = run(self.unity.to_engine(sqlQuery), *args, **kwargs)
                return shows.where(functions.col("isTemporary") | ~functions.lower("tableName").isin(sorted(others)))
        # read_files first: its reader maps the paths and names a missing one as written.
        statement = self.unity.to_engine(replace_read_files(sqlQuery, self._spark) if self.local_files else sqlQuery)
        name = created_table(sqlQuery)
        if name is not None:
            with self.creating(name):
                return run(statement, *args, **kwargs)
        result = run(statement, *args, **kwargs)
        dropped, renamed = dropped_table(sqlQuery), renamed_table(sqlQuery)
        if dropped is not None:
            self._forget(self.key(dropped))
        elif renamed is not None:
            self._renamed(self.key(renamed[0]), self.key(renamed[1]))
        elif untracked_ddl(sqlQuery):
            self._dirty = True  # DDL nbflow does not follow: look at the session's tables after the cell
        return result

    # -- names ------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        """The registry's name (``catalog.schema.table``) for a table name as a notebook wrote it."""
        try:
            return normalize(name, self.unity.catalog, self.unity.schema)
        except CatalogObjectError as exc:
            raise object_error(exc) from None

    def engine_table(self, name: str) -> str:
        """``name`` as the engine knows it: the catalog part replaced when the engine's catalog
        has another name (``hive_metastore``, a catalog served by a spare); else unchanged."""
        try:
            parts = split_name(name)
        except CatalogObjectError:
            return name  # the engine reports what is wrong with it
        if len(parts) != 3:
            return name
        engine = self.unity.engine_catalog(parts[0])
        return name if engine == parts[0].lower() else ".".join(quote(p) for p in (engine, *parts[1:]))

    def engine_key(self, key: str) -> str:
        """The engine's quoted name for a registry name."""
        catalog, schema, table = key.split(".", 2)
        return ".".join(quote(p) for p in (self.unity.engine_catalog(catalog), schema, table))

    @contextlib.contextmanager
    def creating(self, name: str) -> Iterator[None]:
        """Create the table ``name`` as one act across sessions and processes.

        The name is claimed in the registry, the tables others registered are attached (so
        ``IF NOT EXISTS``, ``append`` and "already exists" see the winner's table), the statement
        runs, and the table is registered before the claim is let go.
        """
        key = self.key(name)
        with self._registry.claim(key):
            try:
                self.unity.check_distinct(key)
            except CatalogObjectError as exc:
                raise object_error(exc) from None
            self.pull(force=True)
            self.need([key], [key.rsplit(".", 1)[0]])
            yield
            self._adopt(key)
            self.written.add(key)

    def table_entry(self, name: str) -> TableEntry | None:
        """The registered table that ``name`` (as a notebook wrote it) names, if any."""
        self.spark()
        key = self.key(name)
        self.need([key])
        return self._registry.get(key)

    def wrote(self, name: str) -> None:
        """Note that this session wrote to the table ``name`` (as a notebook wrote it, or
        ``delta.`/path``` for a registered table's folder): the run's ``tables_written``."""
        path = delta_path(name)
        if path is not None:
            self.wrote_path(path)
            return
        try:
            key = normalize(name, self.unity.catalog, self.unity.schema)
        except CatalogObjectError:  # bookkeeping: a statement that succeeded never fails for it
            return
        with self._lock:
            self.written.add(key)

    def wrote_path(self, path: str) -> None:
        """Note a write to a folder: the registered tables kept there were written to."""
        try:
            location = os.path.normpath(self.local_location(path))
            found = [n for n, e in self._registry.tables().items() if os.path.normpath(e.location) == location]
        except Exception:  # bookkeeping: a statement that succeeded never fails for it
            return
        with self._lock:
            self.written.update(found)

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

    def close(self) -> None:
        """Detach from the cluster now (``%unload_ext nbflow``): the session is freed on the server."""
        with self._lock:
            if self._spark is not None:
                atexit.unregister(self._release)
                self._release()
                self._spark = None

    # -- sharing tables ---------------------------------------------------------------------
    def pull(self, force: bool = False) -> None:
        """Follow what other notebooks changed since the last look: a table this session has that
        was dropped or re-created elsewhere is let go. Tables are attached when a statement or
        call names them (:meth:`need`), so a session pays only for the tables it uses."""
        self.follow_volumes()
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
                    self._sql(f"DROP TABLE IF EXISTS {self.engine_key(name)}", quiet=True)
                    del self._known[name]
            self._schemas &= set(self._registry.schemas())

    def follow_volumes(self) -> None:
        """In the sandbox, the volumes created (here or by any process) since the last look
        become writable at /Volumes, and those dropped stop being so (:func:`sandbox.refresh_volumes`)."""
        if not sandbox.inside() or self._registry.generation() == self._volumes_generation:
            return
        self._volumes_generation = self._registry.generation()
        volumes = {name: entry.location for name, entry in self._registry.volumes().items()}
        for problem in sandbox.refresh_volumes(self._registry.volumes_root, volumes):
            print(f"nbflow: warning: {problem}", file=sys.stderr, flush=True)

    def need(self, keys: Iterable[str], schemas: Iterable[str] = ()) -> None:
        """Attach the registered tables ``keys`` (registry names) and make sure the registered
        schemas ``schemas`` (and those of the tables) exist on the engine, if not done yet."""
        if self._spark is None:
            return
        self.pull()
        registered = self._registry.tables()
        known_schemas = self._registry.schemas()
        with self._lock:
            for schema in schemas:
                if schema in known_schemas and schema not in self._schemas:
                    self._ensure_schema(schema)
            for key in keys:
                entry = registered.get(key)
                if entry is None or key in self._known or self._unattachable.get(key) == entry.location:
                    continue
                self._attach(entry)

    def need_schema(self, schema: str) -> None:
        """Attach every registered table of the schema ``catalog.schema`` (for listings)."""
        self.need([n for n in self._registry.tables() if n.rsplit(".", 1)[0] == schema], [schema])

    def need_statement(self, statement: str) -> None:
        """Attach the registered tables (and schemas) a SQL statement may name."""
        chains = name_chains(statement)
        if not chains:
            return
        keys, schemas = set(), set()
        catalog, schema = self.unity.catalog, self.unity.schema
        for parts in chains:
            with contextlib.suppress(CatalogObjectError):
                # `t`, `s.t`, `c.s.t` (and `t.column`, `c.s.t.column`): each prefix may be a table.
                for size in range(1, min(len(parts), 3) + 1):
                    keys.add(normalize(".".join(quote(p) for p in parts[:size]), catalog, schema))
                if len(parts) >= 2:  # `s.t` names a schema of the current catalog; `c.s` a catalog's
                    schemas.add(f"{catalog}.{parts[0].lower()}")
                    schemas.add(".".join(qualify(".".join(quote(p) for p in parts[:2]), catalog, levels=2)))
        schemas.update(k.rsplit(".", 1)[0] for k in keys)
        self.need(keys, schemas)

    def _ensure_schema(self, schema: str) -> None:
        catalog, name = schema.split(".", 1)
        if self._sql(f"CREATE SCHEMA IF NOT EXISTS {quote(self.unity.engine_catalog(catalog))}.{quote(name)}",
                     quiet=True) is not None:
            self._schemas.add(schema)

    def _attach(self, entry: TableEntry) -> None:
        schema = entry.name.rsplit(".", 1)[0]
        if schema not in self._schemas:
            self._ensure_schema(schema)
        if self._sql(
            f"CREATE TABLE IF NOT EXISTS {self.engine_key(entry.name)} USING {entry.format} "
            f"LOCATION {sql_string(entry.location)}",
            quiet=True,
        ) is not None:
            self._known[entry.name] = entry
            self._unattachable.pop(entry.name, None)
        else:  # its folder is gone or damaged: the statement naming it reports that; not retried
            self._unattachable[entry.name] = entry.location

    def push(self) -> None:
        """Register the tables this session created, and unregister those it dropped."""
        if self._spark is None or not self._dirty:
            return
        with self._lock:
            present = self._session_tables()
            if present is None:
                return  # could not list the catalog: change nothing rather than guess
            self._dirty = False
            for name in [n for n in self._known if n not in present]:
                self._forget(name)
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

    def _forget(self, name: str) -> None:
        """This session dropped the table ``name``: unregister it (if it is still the same table)
        and remove a managed table's data."""
        with self._lock:
            known = self._known.pop(name, None)
            self._created.discard(name)
            self.written.discard(name)  # gone: not among the tables the run leaves written
            if known is None:
                return
            entry = self._registry.unregister(name, known.location)
            if entry is not None and entry.managed:
                self._remove_data(entry)

    def _renamed(self, old: str, new: str) -> None:
        """``ALTER TABLE old RENAME TO new`` ran in this session: the registry follows."""
        with self._lock:
            known = self._known.pop(old, None)
            self._created.discard(old)
            if old in self.written:
                self.written.discard(old)
                self.written.add(new)
            if known is not None:
                self._registry.unregister(old, known.location)
            entry = self._describe(new)
            if entry is not None:
                self._known[new] = self._registry.register(new, entry.location, entry.format, entry.managed)
                self._created.add(new)

    def _lost_race(self, name: str, mine: TableEntry, standing: TableEntry) -> None:
        # Created by a path nbflow does not see (so not claimed first) while another notebook
        # registered the name: the catalog keeps the registered table. Say so loudly: rows
        # written to this session's copy are not in the catalog's table.
        self._sql(f"DROP TABLE IF EXISTS {self.engine_key(name)}", quiet=True)
        print(
            f"nbflow: table {name} was created here and by another notebook at the same time; the catalog "
            f"keeps the other notebook's table ({standing.location}); this notebook's copy ({mine.location}) "
            "is not in the catalog",
            file=sys.stderr,
        )

    def _session_tables(self) -> set[str] | None:
        """The tables (registry names) the engine has in this session, in the catalogs it serves."""
        names: set[str] = set()
        try:
            for catalog, engine in self.unity.served_engines():
                for schema_row in self._raw_sql(f"SHOW SCHEMAS IN {quote(engine)}").collect():
                    schema = str(schema_row[0])
                    for row in self._raw_sql(f"SHOW TABLES IN {quote(engine)}.{quote(schema)}").collect():
                        facts = row.asDict()
                        if facts.get("isTemporary"):
                            continue
                        names.add(self.unity.owner(catalog, schema.lower(), str(facts["tableName"]).lower()))
        except ClusterDied:
            raise
        except Exception:
            return None
        return names

    def _describe(self, name: str) -> TableEntry | None:
        rows = self._sql(f"DESCRIBE TABLE EXTENDED {self.engine_key(name)}", quiet=True)
        if not rows:
            return None
        facts = {str(r[0]).strip(): str(r[1]).strip() for r in rows if r[0]}
        location = facts.get("Location", "")
        if not location:
            return None
        location = local_path(location)
        if location.startswith(("/Volumes/", "/dbfs/", "/Workspace/")):
            # Seen by a sandboxed engine: the registry keeps the project's folder, which every
            # process (sandboxed or not) opens.
            location = self.spark_path(location)
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


_DROP_TABLE = re.compile(rf"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>{_IDENT}(?:\s*\.\s*{_IDENT})*)",
                         re.IGNORECASE)


_RENAME_TABLE = re.compile(rf"ALTER\s+TABLE\s+(?P<old>{_IDENT}(?:\s*\.\s*{_IDENT})*)\s+RENAME\s+TO\s+"
                           rf"(?P<new>{_IDENT}(?:\s*\.\s*{_IDENT})*)", re.IGNORECASE)
_SHOW_TABLES = re.compile(rf"SHOW\s+TABLES(?:\s+(?:IN|FROM)\s+(?P<name>{_IDENT}(?:\s*\.\s*{_IDENT})*))?",
                          re.IGNORECASE)
# Statements that change a table's data (or restore it): the table is among the run's tables_written.
_WRITE_TABLE = re.compile(
    r"(?:INSERT\s+(?:INTO|OVERWRITE)(?:\s+TABLE)?|MERGE\s+(?:WITH\s+SCHEMA\s+EVOLUTION\s+)?INTO|UPDATE|"
    r"DELETE\s+FROM|TRUNCATE\s+TABLE|RESTORE(?:\s+TABLE)?|OPTIMIZE|COPY\s+INTO)\s+"
    # Not a table: INSERT OVERWRITE [LOCAL] DIRECTORY, and IDENTIFIER(...) (resolved at run time).
    r"(?!(?:LOCAL\s+)?DIRECTORY\b|IDENTIFIER\s*\()"
    rf"(?P<name>{_IDENT}(?:\s*\.\s*{_IDENT})*)",
    re.IGNORECASE,
)
_UNTRACKED_DDL = re.compile(r"(?:CREATE|ALTER|DROP|REPLACE|MSCK|REFRESH|RESTORE|CONVERT)\b", re.IGNORECASE)


def _body(statement: str) -> str:
    return statement[LEADING_COMMENTS.match(statement).end():]  # type: ignore[union-attr]


def renamed_table(statement: str) -> tuple[str, str] | None:
    """``(old, new)`` for ``ALTER TABLE old RENAME TO new``; None for any other statement."""
    match = _RENAME_TABLE.match(_body(statement))
    return (re.sub(r"\s*\.\s*", ".", match["old"]), re.sub(r"\s*\.\s*", ".", match["new"])) if match else None


def shown_tables(statement: str) -> str | None:
    """The schema a ``SHOW TABLES`` lists (``""`` for the current one); None for other statements."""
    match = _SHOW_TABLES.match(_body(statement))
    if match is None:
        return None
    return re.sub(r"\s*\.\s*", ".", match["name"]) if match["name"] else ""


def untracked_ddl(statement: str) -> bool:
    """A DDL statement whose effect on the session's tables nbflow does not follow itself."""
    return _UNTRACKED_DDL.match(_body(statement)) is not None


def written_table(statement: str) -> str | None:
    """The table a statement writes to (``INSERT``, ``MERGE``, ``UPDATE``, ``DELETE``, ``TRUNCATE``,
    ``RESTORE``, ``OPTIMIZE``, ``COPY INTO``, and a table it creates), as written; else None."""
    match = _WRITE_TABLE.match(_body(statement))
    return re.sub(r"\s*\.\s*", ".", match["name"]) if match else created_table(statement)


def delta_path(name: str) -> str | None:
    """The folder of a path identifier (``delta.`/p```, ``csv.`/p```...); None for a table name."""
    match = re.fullmatch(r"\w+\.`((?:[^`]|``)*/(?:[^`]|``)*)`", name.strip())
    return match[1].replace("``", "`") if match else None


def dropped_table(statement: str) -> str | None:
    """The table a ``DROP TABLE`` statement drops, as written; None for any other statement."""
    body = statement[LEADING_COMMENTS.match(statement).end():]  # type: ignore[union-attr]
    match = _DROP_TABLE.match(body)
    return re.sub(r"\s*\.\s*", ".", match["name"]) if match else None


def created_table(statement: str) -> str | None:
    """The table a SQL statement creates or replaces (``CREATE [OR REPLACE] TABLE``, CTAS,
    ``REPLACE TABLE``), as written; None for any other statement."""
    body = statement[LEADING_COMMENTS.match(statement).end():]  # type: ignore[union-attr]
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
    from pyspark.sql.connect.catalog import Catalog  # lazy: pyspark is heavy (kernel start-up)
    from pyspark.sql.connect.readwriter import (  # lazy: pyspark is heavy (kernel start-up)
        DataFrameReader,
        DataFrameWriter,
        DataFrameWriterV2,
    )

    def creating(method: Callable[..., Any], session_of: Callable[[Any], Any], key: str | None) -> Callable[..., Any]:
        """The method, with the table (argument ``key``, else the V2 writer's own) claimed while it runs."""
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            lakehouse = _lakehouse_of(session_of(self))
            if lakehouse is None:
                return method(self, *args, **kwargs)
            name, args, kwargs = _named_call(lakehouse, self, key, args, kwargs)
            with lakehouse.creating(name):
                return method(self, *args, **kwargs)
        return wrapper

    def pulling(method: Callable[..., Any], session_of: Callable[[Any], Any], key: str | None,
                writes: bool = False) -> Callable[..., Any]:
        """The method, after attaching others' tables, with the table name the engine's; a
        method that ``writes`` notes the table among those the run wrote."""
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            lakehouse = _lakehouse_of(session_of(self))
            if lakehouse is None:
                return method(self, *args, **kwargs)
            name, args, kwargs = _named_call(lakehouse, self, key, args, kwargs)
            lakehouse.need([lakehouse.key(name)])
            done = method(self, *args, **kwargs)
            if writes:
                lakehouse.wrote(name)
            return done
        return wrapper

    def writer_session(w: Any) -> Any:
        return w._spark

    load = DataFrameReader.load

    def checked_load(self: Any, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        lakehouse = _lakehouse_of(self._client)
        # Only a local engine reads this machine's files; an external cluster has its own.
        if lakehouse is not None and lakehouse.local_files:
            paths = [path] if isinstance(path, str) else list(path or [])
            mapped = [lakehouse.spark_path(str(one)) for one in paths]  # reads: a missing volume is PATH_NOT_FOUND
            for given, local in zip(paths, mapped, strict=True):
                _require_path(local, shown=str(given))
            if paths:
                path = mapped[0] if isinstance(path, str) else mapped
        return load(self, path, *args, **kwargs)

    save = DataFrameWriter.save

    def mapped_save(self: Any, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        lakehouse = _lakehouse_of(self._spark)
        if lakehouse is None or not lakehouse.local_files or not isinstance(path, str):
            return save(self, path, *args, **kwargs)
        done = save(self, lakehouse.spark_path(path, writing=True), *args, **kwargs)
        lakehouse.wrote_path(path)  # a registered table's folder, written by path
        return done

    patches: list[tuple[type, str, Callable[..., Any]]] = [
        (DataFrameWriter, "saveAsTable", creating(DataFrameWriter.saveAsTable, writer_session, "name")),
        (DataFrameWriter, "insertInto", pulling(DataFrameWriter.insertInto, writer_session, "tableName", True)),
        (Catalog, "createTable", creating(Catalog.createTable, lambda c: c._sparkSession, "tableName")),
        (DataFrameReader, "table", pulling(DataFrameReader.table, lambda r: r._client, "tableName")),
        (DataFrameReader, "load", checked_load),
        (DataFrameWriter, "save", mapped_save),
    ]
    patches += [(DataFrameWriterV2, verb, creating(getattr(DataFrameWriterV2, verb), writer_session, None))
                for verb in ("create", "replace", "createOrReplace")]
    patches += [(DataFrameWriterV2, verb, pulling(getattr(DataFrameWriterV2, verb), writer_session, None, True))
                for verb in ("append", "overwrite", "overwritePartitions")]
    for cls, name, method in patches:
        setattr(cls, name, method)
    _patched = True


def _named_call(lakehouse: Lakehouse, target: Any, key: str | None, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The table a DataFrame API call names (argument ``key``, else the V2 writer's own), and
    the call's arguments (or the writer) with the engine's name for it."""
    if key is not None:
        return _engine_name(lakehouse, key, args, kwargs)
    name = str(target._table_name)
    _rename_v2(target, lakehouse.engine_table(name))
    return name, args, kwargs


def _rename_v2(writer: Any, name: str) -> None:
    # The V2 writer keeps its table name twice: its own and its pending command's.
    writer._table_name = name
    writer._write.table_name = name


def _engine_name(lakehouse: Lakehouse, key: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The table name a DataFrame API call was given (first argument or keyword ``key``), and the
    call's arguments with it replaced by the engine's name for it."""
    if args:
        name = str(args[0])
        return name, (lakehouse.engine_table(name), *args[1:]), kwargs
    name = str(kwargs[key])
    return name, args, {**kwargs, key: lakehouse.engine_table(name)}


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
    from pyspark.errors.exceptions.connect import AnalysisException  # lazy: pyspark is heavy (kernel start-up)

    # Named as Databricks names it: a mapped Databricks path as dbfs:/..., a local one as file:/...
    if shown is not None and shown != path and shown.startswith(("dbfs:", "/")):
        named = shown if shown.startswith("dbfs:") else "dbfs:" + shown
    else:
        named = f"file:{local}"
    raise AnalysisException(
        message=f"[PATH_NOT_FOUND] Path does not exist: {named}. SQLSTATE: 42K03",
        errorClass="PATH_NOT_FOUND",
        messageParameters={"path": named},
        sql_state="42K03",
    )


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


class SqlContext:
    """``sqlContext``: the legacy entry point, answered by the notebook's session (``sql``,
    ``table``, ``createDataFrame``, ``read``, ``udf``... have the same names there), since Spark
    Connect has no SQLContext of its own."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spark, name)

    def setConf(self, key: str, value: Any) -> None:
        self._spark.conf.set(key, value)

    def getConf(self, key: str, defaultValue: Any = None) -> Any:
        return self._spark.conf.get(key, defaultValue)

    def __repr__(self) -> str:
        return "<sqlContext: the notebook's Spark session (nbflow)>"
