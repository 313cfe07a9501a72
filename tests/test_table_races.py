"""Tables created by several sessions and processes at once: one table each, no rows lost.

Each writer is its own process with its own Spark Connect session, as parallel tasks and
``dbutils.notebook.run`` children are; the rows are counted through the catalog afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow.catalog import Registry
from nbflow.cluster import server as cluster

WRITER = textwrap.dedent(
    """
    import sys, time
    from nbflow.runtime.context import RunContext
    from nbflow.runtime.session import Session

    project, start_at, rows = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    spark = Session(RunContext(project_dir=project, engine="sail")).lakehouse.spark()
    spark.sql("SELECT 1").collect()  # attached and warm before the race starts
    time.sleep(max(0.0, start_at - time.time()))
    spark.sql("CREATE TABLE IF NOT EXISTS race_sql (id BIGINT)")
    spark.sql(f"INSERT INTO race_sql SELECT id FROM range({rows})")
    spark.range(rows).write.mode("append").saveAsTable("race_save")
    spark.sql(f"CREATE TABLE IF NOT EXISTS race_ctas AS SELECT id FROM range({rows})")
    spark.range(rows).writeTo("race_v2").createOrReplace()
    print("done")
    """
)


def _warehouse_copies(project: Path, table: str) -> list[Path]:
    return [log.parent for log in (project / ".nbflow" / "warehouse").glob(f"{table}*/_delta_log")]


def _rows(project: Path, table: str) -> int:
    from deltalake import DeltaTable

    entry = Registry(project).get(table)
    assert entry is not None, f"{table} is not in the catalog"
    return int(DeltaTable(entry.location).count())


@pytest.mark.spark
@pytest.mark.timeout(240)
def test_processes_creating_one_table_at_once_share_it(project: Path) -> None:
    cluster.start(project, "sail")
    writers, rows = 3, 5000
    start_at = time.time() + 8  # every writer attached before any creates
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(project), str(start_at), str(rows)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(writers)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "done" in out, err[-2000:]
    for table in ("race_sql", "race_save"):
        assert _rows(project, table) == writers * rows, table
        assert len(_warehouse_copies(project, table)) == 1, f"private copies of {table} were written"
    # CREATE TABLE IF NOT EXISTS ... AS SELECT: the first creator's rows, the others did nothing.
    assert _rows(project, "race_ctas") == rows
    assert len(_warehouse_copies(project, "race_ctas")) == 1
    assert _rows(project, "race_v2") == rows
    assert sorted(Registry(project).tables()) == [
        "main.default.race_ctas", "main.default.race_save", "main.default.race_sql", "main.default.race_v2"]
    # What a later session sees through the catalog agrees with the Delta logs.
    spark = _session(project)
    assert spark.table("race_sql").count() == writers * rows
    assert spark.sql("SELECT count(*) FROM race_save").collect()[0][0] == writers * rows


_sessions: list[Any] = []


def _session(project: Path) -> Any:
    from nbflow.runtime.context import RunContext
    from nbflow.runtime.session import Session

    spark = Session(RunContext(project_dir=str(project), engine="sail")).lakehouse.spark()
    _sessions.append(spark)
    return spark


@pytest.fixture(autouse=True)
def _stop_sessions() -> Iterator[None]:
    # Sessions of this test process end before the project fixture stops the cluster.
    yield
    while _sessions:
        _sessions.pop().stop()


@pytest.mark.spark
def test_tables_default_to_delta_and_missing_paths_fail(project: Path, tmp_path: Path) -> None:
    from pyspark.errors.exceptions.connect import AnalysisException

    spark = _session(project)
    spark.range(3).write.saveAsTable("plain_save")
    spark.sql("CREATE TABLE plain_sql (id INT)")
    for table in ("plain_save", "plain_sql"):
        facts = {r[0]: r[1] for r in spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()}
        assert facts["Provider"] == "delta", table
        assert Registry(project).get(table).format == "delta"  # type: ignore[union-attr]
    missing = tmp_path / "no-such-folder"
    for read in (lambda: spark.read.parquet(str(missing)), lambda: spark.read.json(f"file:{missing}/*.json"),
                 lambda: spark.read.format("csv").load(str(missing)), lambda: spark.read.load(str(missing))):
        with pytest.raises(AnalysisException, match="PATH_NOT_FOUND") as caught:
            read()
        assert caught.value.getCondition() == "PATH_NOT_FOUND"
    (tmp_path / "data").mkdir()
    spark.range(2).write.parquet(str(tmp_path / "data" / "p"))
    assert spark.read.parquet(str(tmp_path / "data" / "p")).count() == 2  # existing paths still read
    assert spark.read.parquet(str(tmp_path / "data" / "*")).count() == 2  # and globs that match


def test_created_table_names_are_recognised() -> None:
    from nbflow.runtime.lakehouse import created_table

    assert created_table("CREATE TABLE IF NOT EXISTS s.t (id INT)") == "s.t"
    assert created_table("  -- make it\n/* twice */ create or replace table `my t` AS SELECT 1") == "`my t`"
    assert created_table("CREATE EXTERNAL TABLE t USING delta LOCATION '/x'") == "t"
    assert created_table("REPLACE TABLE spark_catalog . s . t AS SELECT 1") == "spark_catalog.s.t"
    assert created_table("CREATE TEMP VIEW v AS SELECT 1") is None
    assert created_table("INSERT INTO t VALUES (1)") is None
    assert created_table("CREATE SCHEMA s") is None


@pytest.mark.spark
def test_registry_damage_is_named_and_rebuilt(project: Path) -> None:
    from nbflow.errors import CatalogDamaged

    spark = _session(project)
    spark.range(4).write.saveAsTable("kept")
    spark.sql("CREATE SCHEMA IF NOT EXISTS sales")
    spark.range(5).write.saveAsTable("sales.orders")
    registry = Registry(project)
    assert set(registry.tables()) == {"main.default.kept", "main.sales.orders"}
    good = registry.path.read_text()
    for damage, said in (("{}", "no tables section"), (good[: len(good) // 2], "not valid JSON"),
                         (good.replace('"managed": true', '"managed": false', 1), "checksum")):
        registry.path.write_text(damage)
        with pytest.raises(CatalogDamaged, match=said) as caught:
            registry.tables()
        assert str(registry.path) in str(caught.value) and "nbflow table rebuild" in str(caught.value)
    # The CLI says the same in one line, exit 2, for list and show alike.
    result = subprocess.run([sys.executable, "-m", "nbflow", "table", "list"], capture_output=True, text=True,
                            cwd=project, timeout=60)
    assert result.returncode == 2 and "fails its checksum" in result.stderr
    assert str(registry.path) in result.stderr and "Traceback" not in result.stderr
    rebuilt = subprocess.run([sys.executable, "-m", "nbflow", "table", "rebuild"], capture_output=True, text=True,
                             cwd=project, timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert set(Registry(project).tables()) == {"main.default.kept", "main.sales.orders"}
    assert (registry.folder / "tables.json.damaged").exists()
    listed = subprocess.run([sys.executable, "-m", "nbflow", "table", "list", "--json"], capture_output=True,
                            text=True, cwd=project, timeout=60)
    assert {row["name"]: row["rows"] for row in json.loads(listed.stdout)} == {
        "main.default.kept": 4, "main.sales.orders": 5}


@pytest.mark.spark
def test_rebuild_without_a_good_copy_recovers_the_warehouse(project: Path) -> None:
    spark = _session(project)
    spark.range(7).write.saveAsTable("only_in_warehouse")
    registry = Registry(project)
    registry.backup.unlink(missing_ok=True)
    registry.path.write_text("{")
    tables, notes = registry.rebuild(project / ".nbflow" / "warehouse")
    assert list(tables) == ["main.default.only_in_warehouse"]
    assert any("recovered from the warehouse" in note for note in notes)
    assert _rows(project, "only_in_warehouse") == 7


def test_a_merge_that_finds_a_newer_commit_is_retried() -> None:
    from nbflow.runtime.lakehouse import _retry_conflicting_commits

    class Racing:
        calls = 0

        def sql(self, query: str) -> str:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("Generic delta kernel error: Missing commit file: expected version 0, found 3")
            return "merged"

    spark = Racing()
    _retry_conflicting_commits(spark)
    assert spark.sql("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT *") == "merged"
    assert spark.calls == 2


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.timeout(300)
def test_a_parallel_plan_creating_one_table_loses_no_rows(project: Path) -> None:
    from .conftest import cli

    plan = Path(__file__).parent / "plans" / "table_race.yaml"
    proc = cli("run", str(plan), "--mode", "parallel", "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for table in ("race_plan_sql", "race_plan_save"):
        assert _rows(project, table) == 3 * 5000, table
        assert len(_warehouse_copies(project, table)) == 1, f"private copies of {table} were written"
    spark = _session(project)
    per_writer = spark.sql("SELECT writer, count(*) FROM race_plan_sql GROUP BY writer ORDER BY writer").collect()
    assert [tuple(r) for r in per_writer] == [(1, 5000), (2, 5000), (3, 5000)]


def test_a_claim_held_too_long_fails_with_the_tables_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from nbflow import catalog
    from nbflow.errors import CatalogBusy

    monkeypatch.setattr(catalog, "CLAIM_TIMEOUT_S", 0.3)
    registry = Registry(project)
    holding, release = threading.Event(), threading.Event()

    def creator() -> None:
        with registry.claim("sales.orders"):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=creator)
    thread.start()
    try:
        assert holding.wait(10)
        busy = r"table main\.sales\.orders: another notebook has been creating it"
        with pytest.raises(CatalogBusy, match=busy), registry.claim("SALES.orders"):
            pass
        with registry.claim("sales.other"):  # other names are not held up
            pass
    finally:
        release.set()
        thread.join()
    with registry.claim("sales.orders"):  # let go when its holder is done
        pass
