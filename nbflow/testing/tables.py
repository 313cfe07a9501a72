"""The project's tables as a test sees them: which ones a run wrote, and what each holds.

Read with delta-rs (``deltalake``), without Spark or the JVM, from the project's catalog of
record (:class:`nbflow.catalog.Registry`). A table's facts are its schema, its row count, a
content hash (a sum of row hashes, so that the order files were written in does not count) and,
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


def _dataset(entry: TableEntry) -> Any:
    """A table as a pyarrow dataset: read batch by batch, never whole unless asked."""
    if entry.format == "delta":
        from deltalake import DeltaTable  # lazy: as in _version

        return DeltaTable(entry.location).to_pyarrow_dataset()
    import pyarrow.dataset as ds  # lazy: as deltalake

    return ds.dataset(entry.location, format=entry.format)


def read_rows(entry: TableEntry) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """A table's schema (column, type) and rows, read with delta-rs (Parquet with pyarrow)."""
    data = _dataset(entry).to_table()
    schema = [(field.name, str(field.type)) for field in data.schema]
    return schema, data.to_pylist()


def content_hash(data: Any) -> str:
    """A hash of a dataset's rows that the order of its rows and files does not change.

    Each row is hashed by pandas (``hash_pandas_object``, vectorised; nested values as sorted
    JSON first) and the row hashes are summed modulo 2**64: a multiset hash, computed one batch at
    a time, so a large table is never held in memory or sorted.
    """
    import numpy as np  # lazy: with pandas, only when a golden looks at tables
    import pandas as pd  # lazy: as numpy
    import pyarrow as pa  # lazy: as numpy

    total = np.uint64(0)
    for batch in data.to_batches():
        if batch.num_rows == 0:
            continue
        columns = [pa.array([json.dumps(v, sort_keys=True, default=str) for v in column.to_pylist()], pa.string())
                   if pa.types.is_nested(column.type) else column for column in batch.columns]
        frame = pa.Table.from_arrays(columns, names=batch.schema.names).to_pandas()
        with np.errstate(over="ignore"):  # wrapping around is the point: the sum modulo 2**64
            total += pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64).sum(dtype=np.uint64)
    return hashlib.sha256(str(int(total)).encode()).hexdigest()[:16]


def facts(entry: TableEntry, small: int = SMALL_TABLE_ROWS) -> dict[str, Any]:
    """What the golden store keeps of a table: schema, row count, content hash, small tables' rows."""
    data = _dataset(entry)
    count = int(data.count_rows())
    found: dict[str, Any] = {"schema": [[field.name, str(field.type)] for field in data.schema],
                             "row_count": count, "hash": content_hash(data)}
    if count <= small:
        rows = data.to_table().to_pylist()
        found["data"] = sorted((json.loads(json.dumps(row, sort_keys=True, default=str)) for row in rows),
                               key=lambda row: json.dumps(row, sort_keys=True))
    return found
