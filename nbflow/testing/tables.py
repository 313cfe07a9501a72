"""The project's tables as a test sees them: which ones a run wrote, and what each holds.

Read with delta-rs (``deltalake``), without Spark or the JVM, from the project's catalog of
record (:class:`nbflow.catalog.Registry`). A table's facts are its schema, its row count, a
content hash (a sum of row hashes, so that the order files were written in does not count) and,
for a small table, its rows: what the golden store keeps as the ``tables`` layer.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
from collections.abc import Iterator
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


@contextlib.contextmanager
def _dataset(entry: TableEntry) -> Iterator[Any]:
    """A table as a pyarrow dataset: read batch by batch, never whole unless asked."""
    if entry.format == "delta":
        from deltalake import DeltaTable  # lazy: as in _version

        data = DeltaTable(entry.location).to_pyarrow_dataset()
    else:
        import pyarrow.dataset as ds  # lazy: as deltalake

        data = ds.dataset(entry.location, format=entry.format)
    try:
        yield data
    finally:
        # Released now, while Arrow is alive: a scanner's threads left to the interpreter's final
        # teardown abort the process ("terminate called without an active exception", exit 134;
        # delta-rs #2184, arrow #34314), which would fail a test run that passed.
        del data
        gc.collect()


def _whole(dataset: Any) -> Any:
    # Batch by batch, not Dataset.to_table(): its scan threads sometimes still run when the
    # interpreter ends, which aborts it (seen once in ten runs here; batches: never in twenty).
    import pyarrow as pa  # lazy: as deltalake

    return pa.Table.from_batches(list(dataset.to_batches()), schema=dataset.schema)


def read_rows(entry: TableEntry) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """A table's schema (column, type) and rows, read with delta-rs (Parquet with pyarrow)."""
    with _dataset(entry) as dataset:
        data = _whole(dataset)
    schema = [(field.name, str(field.type)) for field in data.schema]
    return schema, data.to_pylist()


@functools.cache
def _nullable_types() -> dict[Any, Any]:
    """Arrow's integer and boolean types -> pandas' nullable ones (built once, on first use)."""
    import pandas as pd  # lazy: only when a golden looks at tables
    import pyarrow as pa  # lazy: as pandas

    return {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
            pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _hashable(column: Any) -> Any:
    """A column as it is hashed: nested values as sorted JSON; floating point at single
    precision (about 7 digits), since an engine summing in parallel changes the last bits of a
    double from run to run (the sample plan's revenue sums did) while the data stays the same."""
    import pyarrow as pa  # lazy: as deltalake
    import pyarrow.compute as pc  # lazy: as deltalake

    if pa.types.is_nested(column.type):
        return pa.array([json.dumps(v, sort_keys=True, default=str) for v in column.to_pylist()], pa.string())
    if pa.types.is_floating(column.type):
        return pc.cast(column, pa.float32(), safe=False)
    return column


def content_hash(data: Any) -> str:
    """A hash of a dataset's rows that the order of its rows and files does not change.

    Each row is hashed by pandas (``hash_pandas_object``, vectorised; nested values as sorted
    JSON and floating point at single precision first, see :func:`_hashable`) and the row hashes
    are summed modulo 2**64: a multiset hash, computed one batch at a time, so a large table is
    never held in memory or sorted.
    """
    import numpy as np  # lazy: with pandas, only when a golden looks at tables
    import pandas as pd  # lazy: as numpy
    import pyarrow as pa  # lazy: as numpy

    total = np.uint64(0)
    for batch in data.to_batches():
        if batch.num_rows == 0:
            continue
        columns = [_hashable(column) for column in batch.columns]
        # Each column's pandas type from its Arrow type alone (nullable integers and booleans):
        # numpy's would turn on whether this batch happens to hold a null (int64 or float64).
        frame = pa.Table.from_arrays(columns, names=batch.schema.names).to_pandas(types_mapper=_nullable_types().get)
        with np.errstate(over="ignore"):  # wrapping around is the point: the sum modulo 2**64
            total += pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64).sum(dtype=np.uint64)
    return hashlib.sha256(str(int(total)).encode()).hexdigest()[:16]


def facts(entry: TableEntry, small: int = SMALL_TABLE_ROWS) -> dict[str, Any]:
    """What the golden store keeps of a table: schema, row count, content hash, small tables' rows."""
    with _dataset(entry) as data:
        count = int(data.count_rows())
        found: dict[str, Any] = {"schema": [[field.name, str(field.type)] for field in data.schema],
                                 "row_count": count, "hash": content_hash(data)}
        rows = _whole(data).to_pylist() if count <= small else None
    if rows is not None:
        found["data"] = sorted((json.loads(json.dumps(row, sort_keys=True, default=str)) for row in rows),
                               key=lambda row: json.dumps(row, sort_keys=True))
    return found
