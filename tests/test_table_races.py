"""Tables created by several sessions and processes at once: one table each, no rows lost.

Each writer is its own process with its own Spark Connect session, as parallel tasks and
``dbutils.notebook.run`` children are; the rows are counted through the catalog afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow.catalog import Registry
from nbflow.cluster import server as cluster
from nbflow.project import dbfs_root

WRITER = textwrap.dedent(
    """
    import pathlib, sys, time
    from nbflow.runtime.context import RunContext
    from nbflow.runtime.session import Session

    project, writers, rows, writer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # engine auto: the cluster the test started, whichever engine it runs
    spark = Session(RunContext(project_dir=project, engine="auto")).lakehouse.spark()
    spark.sql("SELECT 1").collect()  # attached and warm before the race starts
    # The race starts when every writer is attached (a JVM session's first statements take seconds).
    ready = pathlib.Path(project, "ready")
    ready.mkdir(exist_ok=True)
    (ready / str(writer)).touch()
    deadline = time.monotonic() + 300
    while len(list(ready.iterdir())) < writers and time.monotonic() < deadline:
        time.sleep(0.05)
    spark.sql("CREATE TABLE IF NOT EXISTS race_sql (id BIGINT)")
    spark.sql(f"INSERT INTO race_sql SELECT id FROM range({rows})")
    spark.range(rows).write.mode("append").saveAsTable("race_save")
    spark.sql(f"CREATE TABLE IF NOT EXISTS race_ctas AS SELECT id FROM range({rows})")
    spark.range(rows).writeTo("race_v2").createOrReplace()
    # Merges into one table at once: each writer's keys are its own, so every row must land
    # (a merge that lost the commit race is run again against the winner's snapshot).
    spark.sql("CREATE TABLE IF NOT EXISTS race_merge (id BIGINT, writer INT)")
    spark.sql(f"MERGE INTO race_merge AS t USING (SELECT id + {writer * rows} AS id, {writer} AS writer "
              f"FROM range({rows})) AS s ON t.id = s.id "
              "WHEN MATCHED THEN UPDATE SET writer = s.writer WHEN NOT MATCHED THEN INSERT *")
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
@pytest.mark.timeout(480)
def test_processes_creating_one_table_at_once_share_it(project: Path, engine: str) -> None:
    writers, rows = 3, 5000
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(project), str(writers), str(rows), str(writer)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for writer in range(writers)
    ]
    outputs = [p.communicate(timeout=420) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "done" in out, err[-2000:]
    for table in ("race_sql", "race_save"):
        assert _rows(project, table) == writers * rows, table
        assert len(_warehouse_copies(project, table)) == 1, f"private copies of {table} were written"
    # CREATE TABLE IF NOT EXISTS ... AS SELECT: the first creator's rows, the others did nothing.
    assert _rows(project, "race_ctas") == rows
    assert len(_warehouse_copies(project, "race_ctas")) == 1
    assert _rows(project, "race_v2") == rows
    assert _rows(project, "race_merge") == writers * rows
    assert sorted(Registry(project).tables()) == [
        "main.default.race_ctas", "main.default.race_merge", "main.default.race_save", "main.default.race_sql",
        "main.default.race_v2"]
    # What a later session sees through the catalog agrees with the Delta logs.
    spark = _session(project)
    assert spark.table("race_sql").count() == writers * rows
    assert spark.sql("SELECT count(*) FROM race_save").collect()[0][0] == writers * rows
    per_writer = spark.sql("SELECT writer, count(DISTINCT id) FROM race_merge GROUP BY writer ORDER BY writer")
    assert [tuple(r) for r in per_writer.collect()] == [(w, rows) for w in range(writers)]


_sessions: list[Any] = []


def _session(project: Path) -> Any:
    from nbflow.runtime.context import RunContext
    from nbflow.runtime.session import Session

    # The test's cluster, whichever engine; DBFS in the project, as for a kernel (not the cwd's).
    context = RunContext(project_dir=str(project), dbfs_root=str(dbfs_root(project)), engine="auto")
    spark = Session(context).lakehouse.spark()
    _sessions.append(spark)
    return spark


@pytest.fixture(autouse=True)
def _stop_sessions() -> Iterator[None]:
    # Sessions of this test process end before the project fixture stops the cluster.
    yield
    while _sessions:
        _sessions.pop().stop()


@pytest.mark.spark
def test_tables_default_to_delta_and_missing_paths_fail(project: Path, tmp_path: Path, engine: str) -> None:
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


def test_written_table_names_are_recognised() -> None:
    # A run's tables_written: what each statement writes to, as the notebook named it.
    from nbflow.runtime.lakehouse import delta_path, written_table

    writes = {
        "INSERT INTO main.s.t VALUES (1)": "main.s.t",
        "-- load\ninsert overwrite table s . t SELECT 1": "s.t",
        "MERGE INTO t AS x USING u ON x.id = u.id WHEN MATCHED THEN DELETE": "t",
        "MERGE WITH SCHEMA EVOLUTION INTO `a b` USING u ON true": "`a b`",
        "UPDATE t SET x = 1": "t",
        "DELETE FROM c.s.t WHERE x = 1": "c.s.t",
        "TRUNCATE TABLE t": "t",
        "RESTORE TABLE t TO VERSION AS OF 1": "t",
        "OPTIMIZE t ZORDER BY (x)": "t",
        "COPY INTO t FROM '/x' FILEFORMAT = CSV": "t",
        "CREATE OR REPLACE TABLE t AS SELECT 1": "t",
        "INSERT INTO delta.`/data/t` VALUES (1)": "delta.`/data/t`",
    }
    assert {statement: written_table(statement) for statement in writes} == writes
    for not_a_table in ("INSERT OVERWRITE DIRECTORY '/p' SELECT 1", "INSERT OVERWRITE LOCAL DIRECTORY '/p' SELECT 1",
                        "INSERT INTO IDENTIFIER(:t) VALUES (1)", "DELETE FROM IDENTIFIER ('a.b')"):
        assert written_table(not_a_table) is None, not_a_table
    assert delta_path("csv.`/data/x.csv`") == "/data/x.csv" and delta_path("main.`my table`") is None
    for other in ("SELECT * FROM t", "DESCRIBE HISTORY t", "DROP TABLE t", "SHOW TABLES", "CREATE VIEW v AS SELECT 1"):
        assert written_table(other) is None, other
    assert delta_path("delta.`/data/t`") == "/data/t" and delta_path("DELTA.`/a``b`") == "/a`b"
    assert delta_path("main.s.t") is None


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
def test_rebuild_without_a_good_copy_recovers_the_warehouse(project: Path, engine: str) -> None:
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
def test_a_parallel_plan_creating_one_table_loses_no_rows(project: Path, engine: str) -> None:
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


def _on(project: Path, engine: str) -> Any:
    """A session on the project's cluster running ``engine``, after stopping whichever ran before
    (``nbflow cluster stop``, then the next start on the other engine: the registry stays)."""
    while _sessions:
        _sessions.pop().stop()
    cluster.stop(project)
    cluster.start(project, engine)
    return _session(project)


def _history(spark: Any, table: str) -> list[tuple[int, str]]:
    return [(int(r["version"]), str(r["operation"])) for r in spark.sql(f"DESCRIBE HISTORY {table}").collect()]


@pytest.mark.spark
@pytest.mark.jvm
@pytest.mark.timeout(600)
def test_a_table_written_on_one_engine_is_read_and_written_on_the_other(project: Path) -> None:
    # Sail first: a managed table in a catalog of its own, and a table by path (root-relative:
    # DBFS, for Spark's writers and SQL alike).
    by_path = "/crossed/by_path"
    spark = _on(project, "sail")
    spark.sql("CREATE CATALOG IF NOT EXISTS dev")
    spark.sql("CREATE SCHEMA IF NOT EXISTS dev.silver")
    spark.range(3).write.saveAsTable("dev.silver.crossed")
    spark.sql("INSERT INTO dev.silver.crossed VALUES (10)")
    spark.range(3).write.format("delta").save(by_path)
    # Then the JVM engine, after a switch: it reads both and writes both.
    spark = _on(project, "spark")
    assert spark.table("dev.silver.crossed").count() == 4
    assert spark.read.format("delta").load(by_path).count() == 3
    spark.range(2).write.mode("append").saveAsTable("dev.silver.crossed")
    spark.sql("UPDATE dev.silver.crossed SET id = id + 100 WHERE id = 10")
    spark.sql(f"INSERT INTO delta.`{by_path}` VALUES (20)")
    jvm_history = _history(spark, "dev.silver.crossed")
    assert [v for v, _ in jvm_history] == [3, 2, 1, 0]
    assert [op for _, op in jvm_history[:2]] == ["UPDATE", "WRITE"]  # delta-spark's own commits
    assert [v for v, _ in _history(spark, f"delta.`{by_path}`")] == [1, 0]
    spark.range(5).write.saveAsTable("main.default.from_jvm")  # a table the JVM engine created
    # Back on Sail: every write of both engines is there, and Sail writes on.
    spark = _on(project, "sail")
    assert sorted(r[0] for r in spark.table("dev.silver.crossed").collect()) == [0, 0, 1, 1, 2, 110]
    assert spark.read.format("delta").load(by_path).count() == 4
    assert spark.table("main.default.from_jvm").count() == 5
    spark.sql("INSERT INTO dev.silver.crossed VALUES (7)")
    spark.range(1).write.mode("append").saveAsTable("main.default.from_jvm")
    sail_history = _history(spark, "dev.silver.crossed")
    assert [v for v, _ in sail_history] == [4, 3, 2, 1, 0]
    assert sail_history[1:3] == jvm_history[:2]  # the JVM engine's commits, as Sail reads them
    # And the JVM engine once more reads what Sail wrote after it.
    spark = _on(project, "spark")
    assert spark.table("dev.silver.crossed").count() == 7
    assert spark.table("main.default.from_jvm").count() == 6
    assert [v for v, _ in _history(spark, "main.default.from_jvm")] == [1, 0]
    assert set(Registry(project).tables()) == {"dev.silver.crossed", "main.default.from_jvm"}
    assert (dbfs_root(project) / "crossed" / "by_path" / "_delta_log" / f"{1:020}.json").is_file()  # Sail v0, JVM v1
