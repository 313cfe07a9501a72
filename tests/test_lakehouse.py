"""Spark in notebooks on the local cluster: SQL, %sql, display, Delta tables, the shared catalog. The
Delta tests run on both engines (Sail, and the JVM engine with delta-spark: the jvm marker)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from nbflow.cluster import server as cluster

from .conftest import NOTEBOOKS, cli, exit_json, run

pytestmark = pytest.mark.kernel


@pytest.mark.spark
def test_spark_sql_temp_views_sql_magic_and_display(project: Path) -> None:
    result = run("spark/basics.py")
    out = exit_json(result)
    assert out["total"] == 100 and out["n"] == 3
    assert "SparkContext" in out["sc_error"] and "Spark Connect" in out["sc_error"]
    saved = nbformat.read(result.output, as_version=4)
    html = [o for o in saved.cells[0].outputs if "text/html" in o.get("data", {})]
    assert html and "<table" in html[0]["data"]["text/html"]
    sql_cell = [o for o in saved.cells[1].outputs if "text/html" in o.get("data", {})]
    assert sql_cell, "the %sql result is displayed"
    state = cluster.status(project)
    assert state is not None and state.engine == "sail"


def test_a_notebook_without_spark_starts_no_cluster(project: Path) -> None:
    run("child.py")
    assert cluster.status(project) is None


@pytest.mark.spark
def test_delta_tables_sql_and_time_travel(project: Path, engine: str) -> None:
    result = run("spark/tables.py")
    out = exit_json(result)
    # What it wrote and kept (dropme was created and dropped; the path table is not in the catalog).
    assert result.tables_written == ["main.default.modes", "main.shop.orders"]
    state = cluster.status(project)
    assert state is not None and state.engine == engine and state.delta
    assert out["error_mode"] == "raised"
    assert out["modes"] == 6  # overwrite 3, append 3, ignore leaves it
    assert out["orders"] == [[1, 0.0], [2, 99.0], [4, 40.0]]
    assert out["three_level"] == 3 and out["read_table"] == 3
    assert out["version0"] == 0  # created empty
    assert out["path_rows"] == 6 and out["path_v0"] == 4 and out["path_ts0"] == 4
    from deltalake import DeltaTable

    assert DeltaTable(out["path"]).version() == 1
    listed = json.loads(cli("table", "list", "--json").stdout)
    names = {t["name"] for t in listed}
    assert {"main.default.modes", "main.shop.orders"} <= names
    assert "main.default.dropme" not in names
    orders = next(t for t in listed if t["name"] == "main.shop.orders")
    assert orders["rows"] == 3 and orders["format"] == "delta" and orders["version"] >= 4
    assert DeltaTable(orders["location"]).to_pandas().shape == (3, 2)
    if engine == "spark":
        assert out["shuffle"] == ["200", str(2 * (os.cpu_count() or 1))]


@pytest.mark.spark
def test_tables_are_shared_across_runs_and_survive_a_cluster_restart(project: Path) -> None:
    assert run("spark/writer.py", {"table": "shop_t", "rows": "7"}).ok
    assert run("spark/reader.py", {"table": "shop_t"}).exit_value == "7"
    assert cluster.stop(project)
    assert run("spark/reader.py", {"table": "default.shop_t"}).exit_value == "7"
    assert run("spark/reader.py", {"table": "main.default.shop_t"}).exit_value == "7"


@pytest.mark.spark
def test_parent_and_child_see_each_others_tables_at_once(project: Path) -> None:
    out = exit_json(run("spark/parent_child_tables.py"))
    assert out == {"child_saw": "3", "parent_saw": 5}


@pytest.mark.spark
def test_delta_table_python_api(project: Path, engine: str) -> None:
    result = run("spark/delta_api.py")
    out = exit_json(result)
    assert result.tables_written == ["main.default.dt"]
    assert out["is_delta_name_path"] is True
    # start 0..4 (v = 1.5 id); update id 1 -> 100; delete 4; merge: 2 -> -1, 3 deleted,
    # insert 4, 5 and 6 (7 excluded by its condition), 0 deleted as not matched by source
    assert out["rows"] == [[1, 100.0], [2, -1.0], [4, 0.5], [5, 0.5], [6, 0.5]]
    assert out["alias_cols"] == 5
    assert out["history_ops"][0] == "CREATE TABLE AS SELECT" or out["history_ops"][0].startswith("CREATE")
    assert len(out["history_ops"]) == 4
    assert out["detail"] == {"format": "delta", "version": 3, "numFiles": True}
    assert out["after_path_delete"] == 4
    assert "has no SQL form" in out["column_error"]  # a Python UDF; other Columns are written as SQL


@pytest.mark.spark
def test_parallel_writers_and_concurrent_merges_lose_no_rows(project: Path, engine: str) -> None:
    assert run("spark/writer.py", {"table": "warmup", "rows": "1"}).ok  # start the cluster once
    with ThreadPoolExecutor(max_workers=3) as pool:
        writers = list(pool.map(lambda n: run("spark/writer.py", {"table": f"par_{n}", "rows": str(n + 1)}),
                                range(3)))
    assert all(r.ok for r in writers)
    assert [run("spark/reader.py", {"table": f"par_{n}"}).exit_value for n in range(3)] == ["1", "2", "3"]
    assert run("spark/merge_into_shared.py", {"start": "0"}).ok  # creates the table
    with ThreadPoolExecutor(max_workers=3) as pool:
        merges = list(pool.map(lambda s: run("spark/merge_into_shared.py", {"start": str(s)}), [1000, 2000, 3000]))
    # Concurrent MERGEs into one table conflict in Delta; the loser's statement is retried.
    assert [m.error for m in merges] == [None, None, None]
    assert run("spark/reader.py", {"table": "merged"}).exit_value == "4000"


@pytest.mark.spark
def test_table_show_cli(project: Path) -> None:
    assert run("spark/writer.py", {"table": "shown", "rows": "4"}).ok
    data = json.loads(cli("table", "show", "shown", "--limit", "2", "--history", "--json").stdout)
    assert data["name"] == "main.default.shown" and data["rows"] == 4
    assert len(data["sample"]) == 2 and data["columns"] == ["id"]
    assert data["history"][0]["version"] == 0
    missing = cli("table", "show", "nope")
    assert missing.returncode == 2 and "no table named nope" in missing.stderr


@pytest.mark.spark
@pytest.mark.parametrize("name", ["worker_2_customer_ltv.ipynb", "worker_5_big_orders.py"])
def test_sample_workers_upsert_instead_of_duplicating(project: Path, name: str) -> None:
    samples = NOTEBOOKS.parent.parent / "sample_notebooks"
    from nbflow import run_notebook

    assert run_notebook(samples / "setup.py", {"rows": "20000"}).ok
    first = json.loads(run_notebook(samples / name).exit_value)
    second = json.loads(run_notebook(samples / name).exit_value)
    assert first["rows_inserted"] > 0 and first["rows_updated"] == 0
    assert second == {**first, "rows_inserted": 0, "rows_updated": first["rows_inserted"]}


@pytest.mark.jvm
def test_the_jvm_engine_starts_without_delta_when_its_jars_cannot_be_fetched(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbflow import run_notebook

    monkeypatch.setenv("NBFLOW_CACHE_DIR", str(project / "empty-cache"))
    monkeypatch.setenv("NBFLOW_MAVEN_REPO", "file:///nowhere")  # offline, as an air-gapped machine
    result = run_notebook(NOTEBOOKS / "spark" / "basics.py", engine_name="spark")
    out = exit_json(result)
    assert out["total"] == 100 and out["n"] == 3
    state = cluster.status(project)
    assert state is not None and state.engine == "spark" and not state.delta
    assert "without Delta: could not fetch io.delta:delta-spark_2.13:" in state.reason


@pytest.mark.spark
def test_fresh_cluster_restarts_it(project: Path) -> None:
    assert run("spark/writer.py", {"table": "kept", "rows": "2"}).ok
    before = cluster.status(project)
    proc = cli("run", str(NOTEBOOKS / "spark" / "reader.py"), "-p", "table=kept", "--fresh-cluster", "--json")
    assert json.loads(proc.stdout)["tasks"][0]["exit_value"] == "2"
    after = cluster.status(project)
    assert before is not None and after is not None and after.pid != before.pid


@pytest.mark.spark
def test_spark_reads_and_writes_dbfs_paths_in_the_projects_dbfs(project: Path) -> None:
    out = exit_json(run("spark/dbfs_paths.py"))
    assert out["parquet"] == 3 and out["delta"] == 4
    assert out["listed"] == ["d/", "p/"]  # where dbutils.fs sees them: one DBFS for both
    assert out["missing"] == ("AnalysisException: [PATH_NOT_FOUND] Path does not exist: "
                              "dbfs:/tmp/nbflow-spark/missing. SQLSTATE: 42K03")
    assert (project / ".nbflow" / "dbfs" / "tmp" / "nbflow-spark" / "d" / "_delta_log").is_dir()
    assert not Path("/tmp/nbflow-spark").exists() and not Path("/dbfs").exists()
