"""The project's tables as a test sees them: which ones a run wrote, and what each holds.

Read with delta-rs (``deltalake``), without Spark or the JVM, from the project's catalog of
record (:class:`nbflow.catalog.Registry`). A table's facts are its schema, its row count, a
content hash (of its rows sorted, so that the order files were written in does not count) and,
for a small table, its rows: what the golden store keeps as the ``tables`` layer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..catalog import LEGACY_CATALOG, Registry, TableEntry
from ..errors import InputError

SMALL_TABLE_ROWS = 50  # a table this small is kept whole in a golden


def versions(project: Path) -> dict[str, tuple[str, int | float | None]]:
    """Each registered table's location and version (a Delta version, else the newest file's
    time): compared before and after a run, they tell which tables the run wrote."""
    found: dict[str, tuple[str, int | float | None]] = {}
    for name, entry in Registry(project).tables().items():
        found[name] = (entry.location, _version(entry))
    return found


def layer(project: Path, names: list[str]) -> dict[str, Any]:
    """The ``tables`` layer of a snapshot: the facts of each table named, by name."""
    registry = Registry(project)
    tables = registry.tables()
    return {name: facts(tables[name]) for name in names if name in tables}


def written(project: Path, before: dict[str, tuple[str, int | float | None]]) -> list[str]:
    """The tables created, replaced or changed since ``before`` (:func:`versions`), by name."""
    return sorted(name for name, now in versions(project).items() if before.get(name) != now)


def _version(entry: TableEntry) -> int | float | None:
    if entry.format == "delta":
        from deltalake import DeltaTable  # lazy: pyarrow (~0.2 s), only when tables are looked at
        from deltalake.exceptions import DeltaError  # lazy: as DeltaTable

        try:
            return int(DeltaTable(entry.location).version())
        except (DeltaError, OSError):  # gone or damaged: another table's trouble, not this run's
            return None
    files = [p.stat().st_mtime for p in Path(entry.location).rglob("*") if p.is_file()]
    return max(files, default=None)


def lookup(project: Path, name: str) -> TableEntry:
    """A table by its name (``catalog.schema.table``; ``schema.table`` and ``table`` in ``main``,
    then in ``hive_metastore``), as ``nbflow table show`` finds it."""
    registry = Registry(project)
    entry = registry.get(name) or registry.get(name, catalog=LEGACY_CATALOG)
    if entry is None:
        raise InputError(f"no table named {name} in this project ({project}; see `nbflow table list`)")
    return entry


def read_rows(entry: TableEntry) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """A table's schema (column, type) and rows, read with delta-rs (Parquet with pyarrow)."""
    if entry.format == "delta":
        from deltalake import DeltaTable  # lazy: as in _version

        data = DeltaTable(entry.location).to_pyarrow_table()
    else:
        import pyarrow.dataset as ds  # lazy: as deltalake

        data = ds.dataset(entry.location, format=entry.format).to_table()
    schema = [(field.name, str(field.type)) for field in data.schema]
    return schema, data.to_pylist()


def facts(entry: TableEntry, small: int = SMALL_TABLE_ROWS) -> dict[str, Any]:
    """What the golden store keeps of a table: schema, row count, content hash, small tables' rows."""
    schema, rows = read_rows(entry)
    lines = sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
    found: dict[str, Any] = {"schema": [list(c) for c in schema], "row_count": len(rows),
                             "hash": hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]}
    if len(rows) <= small:
        found["data"] = [json.loads(line) for line in lines]
    return found
