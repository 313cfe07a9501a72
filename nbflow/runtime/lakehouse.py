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
import shutil
import threading
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


class Lakehouse:
    """The kernel's Spark session and its view of the project's tables."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._spark: Any = None
        self._lock = threading.RLock()
        self._registry = Registry(session.context.project_dir)
        self._stamp = -1.0
        self._known: dict[str, TableEntry] = {}  # tables this session has, by schema.table
        self.state: Any = None

    @property
    def attached(self) -> bool:
        return self._spark is not None

    def spark(self) -> Any:
        """The session, attaching (and starting the cluster) on first use."""
        with self._lock:
            if self._spark is None:
                from .. import cluster

                ctx = self._session.context
                self.state = cluster.ensure_running(Path(ctx.project_dir), ctx.engine)
                self._spark = cluster.attach(self.state)
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
        if self._spark is None or self._registry.stamp() == self._stamp:
            return
        with self._lock:
            self._stamp = self._registry.stamp()
            registered = self._registry.tables()
            for name in [n for n in self._known if n not in registered]:
                # Dropped elsewhere: forget it here too.
                self._sql(f"DROP TABLE IF EXISTS {_ident(name)}", quiet=True)
                del self._known[name]
            for name, entry in registered.items():
                if self._known.get(name) == entry:
                    continue
                if name in self._known:
                    self._sql(f"DROP TABLE IF EXISTS {_ident(name)}", quiet=True)
                self._sql(f"CREATE SCHEMA IF NOT EXISTS `{entry.schema}`", quiet=True)
                if self._sql(
                    f"CREATE TABLE IF NOT EXISTS {_ident(name)} USING {entry.format} LOCATION '{entry.location}'",
                    quiet=True,
                ):
                    self._known[name] = entry

    def push(self) -> None:
        """Register the tables this session created, and unregister those it dropped."""
        if self._spark is None:
            return
        with self._lock:
            present = self._session_tables()
            for name in [n for n in self._known if n not in present]:
                entry = self._registry.unregister(name)
                del self._known[name]
                if entry is not None and entry.managed:
                    self._remove_data(entry)
            for name in present:
                if name not in self._known:
                    entry = self._describe(name)
                    if entry is not None:
                        self._known[name] = self._registry.register(
                            name, entry.location, entry.format, entry.managed
                        )
            self._stamp = self._registry.stamp()

    def _session_tables(self) -> set[str]:
        names: set[str] = set()
        spark = self._spark
        for db in spark.catalog.listDatabases():
            for table in spark.catalog.listTables(db.name):
                if not table.isTemporary and (table.tableType or "").upper() != "VIEW":
                    names.add(normalize(f"{db.name}.{table.name}"))
        return names

    def _describe(self, name: str) -> TableEntry | None:
        rows = self._sql(f"DESCRIBE TABLE EXTENDED {_ident(name)}", quiet=True)
        if not rows:
            return None
        facts = {str(r[0]).strip(): str(r[1]).strip() for r in rows if r[0]}
        location = facts.get("Location", "")
        if not location:
            return None
        if location.startswith("file:"):
            location = "/" + location[len("file:"):].lstrip("/")
        elif not location.startswith("/"):
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


def _ident(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


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
