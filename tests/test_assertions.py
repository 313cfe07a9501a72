"""``assert_df_equal``'s semantics (pyspark.testing's, plus keys and ignored columns) on pandas,
pyarrow and plain rows; Spark DataFrames and ``assert_table`` are in tests/test_pytest_plugin.py."""

from __future__ import annotations

import math

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
