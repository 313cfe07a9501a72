"""The shared table catalog: which table names exist in the project, and where their data is.

Databricks notebooks on one cluster share one metastore: a table written by one notebook is
visible by name to every other. Sail, the engine that runs Delta here, keeps a catalog per
Spark Connect session, and Apache Spark's server forgets its in-memory catalog on restart. So
nbflow keeps the project's catalog itself, in ``.nbflow/catalog/tables.json``: every kernel
registers the tables its session creates and attaches the tables others registered (see
:mod:`nbflow.runtime.lakehouse`). The data stays in ordinary Delta (or Parquet) folders that
any Delta reader opens.

Why not Sail's Unity Catalog provider: tried with a local UC REST endpoint, Sail then creates
"catalog-managed" Delta tables (reader feature ``catalogManaged``) whose commits go through the
catalog's commit API, which delta-rs and older Delta readers cannot open.

Imported inside kernels: standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_CATALOG = "spark_catalog"
DEFAULT_SCHEMA = "default"


@dataclass
class TableEntry:
    name: str  # schema.table, lower case, as Spark resolves unquoted names
    location: str  # absolute path of the table's folder
    format: str  # "delta", "parquet", ...
    managed: bool  # dropping the table removes its data
    updated_at: str

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def full_name(self) -> str:
        return f"{DEFAULT_CATALOG}.{self.name}"


def normalize(name: str, current_schema: str = DEFAULT_SCHEMA) -> str:
    """``t``, ``schema.t`` or ``catalog.schema.t`` → ``schema.t`` (backticks removed, lower case)."""
    parts = [p.strip("`") for p in name.split(".")]
    if len(parts) == 1:
        parts = [current_schema, *parts]
    return ".".join(parts[-2:]).lower()


class Registry:
    """The project's table registry: a JSON file changed under an exclusive file lock."""

    def __init__(self, project: str | Path) -> None:
        self.folder = Path(project) / ".nbflow" / "catalog"
        self.path = self.folder / "tables.json"

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data

    def generation(self) -> int:
        """A counter that every change increments (a file time can repeat within a clock tick)."""
        return int(self._read().get("generation", 0))

    def tables(self) -> dict[str, TableEntry]:
        return {name: TableEntry(**entry) for name, entry in self._read().get("tables", {}).items()}

    def get(self, name: str) -> TableEntry | None:
        return self.tables().get(normalize(name))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, TableEntry]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            tables = {name: TableEntry(**entry) for name, entry in data.get("tables", {}).items()}
            before = dict(tables)
            yield tables
            if tables != before:
                self._write(tables, int(data.get("generation", 0)) + 1)

    def _write(self, tables: dict[str, TableEntry], generation: int) -> None:
        payload = {"version": 1, "generation": generation,
                   "tables": {name: asdict(e) for name, e in sorted(tables.items())}}
        # Written whole and renamed, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tables-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def register(self, name: str, location: str, fmt: str, managed: bool) -> TableEntry:
        entry = TableEntry(normalize(name), location, fmt.lower(), managed, _now())
        with self._locked() as tables:
            tables[entry.name] = entry
        return entry

    def unregister(self, name: str, location: str | None = None) -> TableEntry | None:
        """Forget a table; with ``location``, only if it is still that table (not one re-created
        meanwhile by another notebook under the same name)."""
        with self._locked() as tables:
            entry = tables.get(normalize(name))
            if entry is None or (location is not None and entry.location != location):
                return None
            return tables.pop(entry.name)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def describe(entry: TableEntry) -> dict[str, Any]:
    """A table's facts for ``nbflow table list``: version and rows from the Delta log (delta-rs)."""
    facts: dict[str, Any] = {"name": entry.full_name, "location": entry.location, "format": entry.format,
                             "version": None, "rows": None}
    if entry.format == "delta":
        from deltalake import DeltaTable

        table = DeltaTable(entry.location)
        facts["version"] = table.version()
        facts["rows"] = table.count()
    return facts
