"""DataFrame and table assertions for tests, with pyspark.testing's semantics and a readable diff.

``assert_df_equal(actual, expected)`` compares two tables of rows: Spark DataFrames (classic or
Spark Connect), pandas DataFrames, pyarrow Tables, or lists of dicts (a list of tuples takes the
other side's columns). As ``pyspark.testing.assertDataFrameEqual``: row order does not count
unless asked (``check_row_order``), numbers may differ within ``rtol``/``atol``, NaN equals NaN.
Beyond it: ``ignore_columns``, and ``key`` columns for a keyed diff (rows missing, unexpected,
and changed column by column). ``assert_table(name, expected)`` reads a table of the project's
catalog with delta-rs, no Spark needed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..project import project_dir
from . import tables

Rows = list[dict[str, Any]]


def assert_df_equal(actual: Any, expected: Any, *, key: str | Sequence[str] | None = None,
                    check_row_order: bool = False, check_column_order: bool = False,
                    ignore_columns: Iterable[str] = (), rtol: float = 0.0, atol: float = 0.0,
                    max_errors: int = 10) -> None:
    """Raise AssertionError, saying what differs, unless ``actual`` and ``expected`` hold the
    same rows (see the module's docstring)."""
    actual, expected = _once(actual), _once(expected)
    a_columns, a_rows = _table(actual, None)
    e_columns, e_rows = _table(expected, a_columns)
    if a_columns is None:
        a_columns, a_rows = _table(actual, e_columns)
    if a_columns is None or e_columns is None:
        raise TypeError("assert_df_equal: neither side names its columns (two lists of tuples): "
                        "give one side as a DataFrame, an Arrow table or dicts")
    ignored = set(ignore_columns)
    a_names = [c for c in a_columns or [] if c not in ignored]
    e_names = [c for c in e_columns or [] if c not in ignored]
    same_columns = a_names == e_names if check_column_order else set(a_names) == set(e_names)
    if not same_columns:
        raise AssertionError(f"columns differ: actual {a_names}, expected {e_names}")
    a_rows = [{c: r.get(c) for c in e_names} for r in a_rows]
    e_rows = [{c: r.get(c) for c in e_names} for r in e_rows]
    close = _Close(rtol, atol)
    keys = [key] if isinstance(key, str) else list(key or [])
    if keys:
        problems = _keyed(a_rows, e_rows, keys, close)
    elif check_row_order:
        problems = _ordered(a_rows, e_rows, close)
    else:
        problems = _unordered(a_rows, e_rows, close)
    if problems:
        shown = problems[:max_errors]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise AssertionError(f"rows differ ({len(a_rows)} actual, {len(e_rows)} expected"
                             f"{', key ' + ', '.join(keys) if keys else ''}):\n  " + "\n  ".join(shown) + more)


def assert_table(name: str, expected: Any, *, project: str | Path | None = None, **options: Any) -> None:
    """:func:`assert_df_equal` of the project's table ``name`` (read with delta-rs) and ``expected``."""
    entry = tables.lookup(Path(project) if project else project_dir(), name)
    schema, rows = tables.read_rows(entry)
    actual = [{column: row.get(column) for column, _ in schema} for row in rows]
    try:
        assert_df_equal(actual, expected, **options)
    except AssertionError as exc:
        raise AssertionError(f"table {entry.full_name}: {exc}") from None


# -- reading both sides --------------------------------------------------------------------------
def _once(data: Any) -> Any:
    """A generator or other one-pass iterable as a list, so that it can be read twice."""
    if isinstance(data, Iterator):
        return list(data)
    return data


def _table(data: Any, columns: list[str] | None) -> tuple[list[str] | None, Rows]:
    """Column names (None when the data has none: tuples) and rows as dicts."""
    if hasattr(data, "collect") and hasattr(data, "schema") and hasattr(data, "columns"):  # Spark
        names = list(data.columns)
        return names, [row.asDict(recursive=True) for row in data.collect()]
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas
        return [str(c) for c in data.columns], data.to_dict("records")
    if hasattr(data, "to_pylist") and hasattr(data, "column_names"):  # pyarrow
        return list(data.column_names), data.to_pylist()
    rows = list(data)
    if all(isinstance(r, dict) for r in rows):
        names = list(dict.fromkeys(c for r in rows for c in r))
        return (names or columns), rows
    if columns is None:
        return None, []
    return columns, [dict(zip(columns, r, strict=True)) for r in rows]


# -- comparing rows -------------------------------------------------------------------------------
class _Close:
    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol

    def value(self, a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) \
                and not isinstance(b, bool):
            return math.isclose(a, b, rel_tol=self.rtol, abs_tol=self.atol)
        return bool(a == b)

    def row(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(self.value(a[c], b[c]) for c in b)

    def changes(self, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
        return [f"{c}: expected {_show(b[c])}, actual {_show(a[c])}" for c in b if not self.value(a[c], b[c])]


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _canon(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _ordered(actual: Rows, expected: Rows, close: _Close) -> list[str]:
    problems = [f"row {i + 1}: " + "; ".join(close.changes(a, e))
                for i, (a, e) in enumerate(zip(actual, expected, strict=False)) if not close.row(a, e)]
    problems += [f"row {i + 1} missing from actual: {_canon(e)}" for i, e in enumerate(expected[len(actual):],
                                                                                       len(actual))]
    problems += [f"row {i + 1} unexpected: {_canon(a)}" for i, a in enumerate(actual[len(expected):],
                                                                           len(expected))]
    return problems


def _unordered(actual: Rows, expected: Rows, close: _Close) -> list[str]:
    """Rows as multisets: exact matches first, then the rest matched within the tolerances."""
    left = Counter(_canon(r) for r in actual)
    right = Counter(_canon(r) for r in expected)
    missing = [json.loads(r) for r in (right - left).elements()]
    extra = [json.loads(r) for r in (left - right).elements()]
    unmatched: Rows = []
    for e in missing:
        found = next((i for i, a in enumerate(extra) if close.row(a, e)), None)
        if found is None:
            unmatched.append(e)
        else:
            extra.pop(found)
    return ([f"missing from actual: {_canon(e)}" for e in unmatched]
            + [f"unexpected: {_canon(a)}" for a in extra])


def _keyed(actual: Rows, expected: Rows, keys: list[str], close: _Close) -> list[str]:
    def index(rows: Rows, side: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            k = tuple(json.dumps(row.get(c), default=str) for c in keys)
            if k in found:
                raise AssertionError(f"key {', '.join(keys)} is not unique in {side}: {_describe(k, keys)}")
            found[k] = row
        return found

    a, e = index(actual, "actual"), index(expected, "expected")
    problems = [f"missing from actual: {_describe(k, keys)}" for k in e if k not in a]
    problems += [f"unexpected: {_describe(k, keys)}" for k in a if k not in e]
    problems += [f"changed {_describe(k, keys)}: " + "; ".join(close.changes(a[k], e[k]))
                 for k in e if k in a and not close.row(a[k], e[k])]
    return problems


def _describe(key: tuple[Any, ...], columns: list[str]) -> str:
    return ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=True))
