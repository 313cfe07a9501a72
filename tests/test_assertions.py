"""``assert_df_equal``'s semantics (pyspark.testing's, plus keys and ignored columns) on pandas,
pyarrow and plain rows; Spark DataFrames and ``assert_table`` are in tests/test_pytest_plugin.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from nbflow.testing import assert_df_equal

ROWS = [{"id": 1, "name": "a", "amount": 10.0}, {"id": 2, "name": "b", "amount": 20.0}]


def test_the_same_rows_in_any_order_and_from_any_source_are_equal() -> None:
    assert_df_equal(pd.DataFrame(ROWS[::-1]), ROWS)
    assert_df_equal(pa.Table.from_pylist(ROWS), pd.DataFrame(ROWS))
    assert_df_equal([(1, "a", 10.0), (2, "b", 20.0)], pa.Table.from_pylist(ROWS))  # tuples take the columns
    assert_df_equal([{"x": math.nan}], [{"x": math.nan}])


def test_row_order_counts_only_when_asked() -> None:
    with pytest.raises(AssertionError, match=r"row 1: id: expected 1, actual 2"):
        assert_df_equal(ROWS[::-1], ROWS, check_row_order=True)


def test_tolerances_and_ignored_columns() -> None:
    close = [{**ROWS[0], "amount": 10.0000001}, ROWS[1]]
    with pytest.raises(AssertionError, match="unexpected"):
        assert_df_equal(close, ROWS)
    assert_df_equal(close, ROWS, rtol=1e-6)
    assert_df_equal([{**r, "loaded_at": "now"} for r in ROWS], ROWS, ignore_columns=["loaded_at"])
    with pytest.raises(AssertionError, match=r"columns differ: actual \['id', 'name', 'amount', 'loaded_at'\]"):
        assert_df_equal([{**r, "loaded_at": "now"} for r in ROWS], ROWS)


def test_a_keyed_diff_names_rows_missing_unexpected_and_changed() -> None:
    actual = [{"id": 2, "name": "b", "amount": 25.0}, {"id": 3, "name": "c", "amount": 1.0}]
    with pytest.raises(AssertionError) as info:
        assert_df_equal(actual, ROWS, key="id")
    message = str(info.value)
    assert message.splitlines()[0] == "rows differ (2 actual, 2 expected, key id):"
    assert "missing from actual: id=1" in message
    assert "unexpected: id=3" in message
    assert "changed id=2: amount: expected 20.0, actual 25.0" in message
    with pytest.raises(AssertionError, match="key id is not unique in actual: id=2"):
        assert_df_equal([ROWS[1], ROWS[1]], ROWS, key="id")


def test_many_differences_are_cut_short() -> None:
    with pytest.raises(AssertionError, match=r"\.\.\. and 35 more"):
        assert_df_equal([{"i": i} for i in range(20)], [{"i": i} for i in range(20, 40)], key="i", max_errors=5)


def test_rows_without_column_names_on_both_sides_are_refused_and_iterators_read_once() -> None:
    with pytest.raises(TypeError, match="neither side names its columns"):
        assert_df_equal([(1, 2)], [(3, 4)])
    assert_df_equal(iter([(1, "a", 10.0), (2, "b", 20.0)]), iter(ROWS))
    with pytest.raises(AssertionError, match="missing from actual"):
        assert_df_equal(iter([(1, "a", 10.0)]), ROWS)


def test_table_facts_hash_rows_in_any_order_and_stream_large_tables(tmp_path: Path) -> None:
    # The golden `tables` layer: the same rows written in other files and another order hash
    # the same; one row changed does not. A table past the small size keeps no rows.
    from deltalake import write_deltalake

    from nbflow.catalog import TableEntry
    from nbflow.testing import tables

    data = pa.table({"id": list(range(60)), "tags": [[i, -i] for i in range(60)],
                     "row": [{"x": str(i)} for i in range(60)]})
    write_deltalake(str(tmp_path / "one"), data)
    write_deltalake(str(tmp_path / "two"), data.slice(30))
    write_deltalake(str(tmp_path / "two"), data.slice(0, 30), mode="append")
    changed = data.set_column(0, "id", pa.array([*range(59), 99]))
    write_deltalake(str(tmp_path / "three"), changed)
    facts = {name: tables.facts(TableEntry(f"main.s.{name}", str(tmp_path / name), "delta", True, ""))
             for name in ("one", "two", "three")}
    assert facts["one"] == facts["two"] and facts["one"]["row_count"] == 60 and "data" not in facts["one"]
    assert facts["three"]["hash"] != facts["one"]["hash"]
    # A null in one file's batch must not change how the other rows hash (int64 stays integral).
    nullable = pa.table({"n": pa.array([1, 2, None, 2**60 + 1], pa.int64()), "b": pa.array([True, None, False, True])})
    write_deltalake(str(tmp_path / "whole"), nullable)
    write_deltalake(str(tmp_path / "split"), nullable.slice(0, 2))
    write_deltalake(str(tmp_path / "split"), nullable.slice(2), mode="append")
    split = {name: tables.facts(TableEntry(f"main.s.{name}", str(tmp_path / name), "delta", True, ""))["hash"]
             for name in ("whole", "split")}
    assert split["whole"] == split["split"]
    small = tables.facts(TableEntry("main.s.two", str(tmp_path / "two"), "delta", True, ""), small=60)
    assert small["data"][:2] == [{"id": 0, "row": {"x": "0"}, "tags": [0, 0]},
                                 {"id": 1, "row": {"x": "1"}, "tags": [1, -1]}]
