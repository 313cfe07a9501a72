"""Unity Catalog locally: catalogs, schemas, volumes and three-level names, in real notebooks on Sail and
on the JVM engine (Apache Spark with delta-spark), through the same registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nbflow.catalog import Registry
from nbflow.cluster import server as cluster

from .conftest import cli, exit_json, run

pytestmark = pytest.mark.kernel


@pytest.mark.spark
def test_catalogs_schemas_and_three_level_names(project: Path, engine: str) -> None:
    out = exit_json(run("uc/catalogs.py"))
    assert out["start"] == ["main", "main", "default"]  # a new workspace's current catalog
    assert out["again"].startswith("AnalysisException: [CATALOG_ALREADY_EXISTS]")
    assert out["catalogs"] == ["hive_metastore", "main", "sales_dev", "system"]
    assert out["like"] == ["main", "sales_dev"]
    assert out["list_catalogs"] == out["catalogs"]
    assert out["current"] == ["sales_dev", "sales_dev"]
    assert out["orders"] == [[1, 0.0], [2, 99.0], [4, 40.0]]
    assert out["two_level"] == 3
    assert out["ctas"] == 2 and out["columns"] == ["id", "amount"]
    assert out["numbers"] == 6 and out["v2"] == 5
    assert out["exists"] == [True, True, False, True]
    assert out["list_tables"] == [["sales_dev", "big"], ["sales_dev", "orders"], ["sales_dev", "v2"]]
    assert out["list_databases"] == ["bronze", "default"]
    assert out["db_exists"] == [True, False]
    assert out["after_use"] == ["main", "default", 6]
    assert out["set_current"] == ["sales_dev", "bronze", 3]
    assert out["schemas"] == ["bronze", "default"]
    assert out["tables"] == ["big", "orders", "v2"]
    assert out["delta_for_name"] == [3, 3] and out["history"] == 5  # create, insert, merge, update, delete
    assert out["dropped"] is False
    assert out["no_catalog"].startswith("AnalysisException: [NO_SUCH_CATALOG_EXCEPTION]")
    assert out["not_empty"].startswith("[SCHEMA_NOT_EMPTY]")
    assert out["read_only"].startswith("[READ_ONLY_CATALOG]")
    assert out["scratch_gone"] == [False, False]
    assert out["legacy"] == 1
    # The registry keeps three-level names; the CLI prints them.
    registry = Registry(project)
    assert set(registry.tables()) == {"sales_dev.bronze.orders", "sales_dev.bronze.v2", "main.default.numbers",
                                      "hive_metastore.default.legacy"}
    assert registry.catalogs()["sales_dev"]["comment"] == "a dev catalog"
    listed = {row["name"]: row["rows"] for row in json.loads(cli("table", "list", "--json").stdout)}
    assert listed["sales_dev.bronze.orders"] == 3 and listed["main.default.numbers"] == 6


@pytest.mark.spark
def test_parent_child_share_a_catalog_across_a_restart_and_later_runs(project: Path, engine: str) -> None:
    out = exit_json(run("uc/parent.py"))
    assert out == {"child_saw": "3", "parent_saw": 5, "child_wrote": "team"}
    # The cluster was started before `team` existed: a spare catalog served it. After a restart
    # the engine serves it under its own name; the tables are the same.
    assert cluster.stop(project)
    assert run("uc/child_reader.py", {"table": "team.silver.shared"}).exit_value == "3"
    state = cluster.status(project)
    assert state is not None
    assert run("uc/child_reader.py", {"table": "team.silver.from_child"}).exit_value == "5"


@pytest.mark.spark
def test_volumes_and_dbfs_paths(project: Path, engine: str) -> None:
    out = exit_json(run("uc/volumes.py"))
    assert out["volumes"] == [["landing", "ext"], ["landing", "raw"]]
    assert out["ext"] == ["EXTERNAL", True]
    # SQL reads each file's header line as a row, as Spark does: one file on Sail, one per core's
    # partition on the JVM engine (Databricks: one per partition too).
    assert out["csv"] == 2 and out["csv_sql"] == 2 + out["csv_files"]
    # (the JVM engine's local[*] spreads the two rows over min(rows, cores) partitions)
    assert out["csv_files"] == (1 if engine == "sail" else min(2, os.cpu_count() or 1))
    assert out["read_files"] == [[1, "a"], [2, "b"]]  # ids inferred as numbers
    assert out["read_files_missing"].startswith(
        "[PATH_NOT_FOUND] Path does not exist: dbfs:/Volumes/main/landing/raw/nothing.csv")
    assert out["fs"] == ["csv/", "notes/"]
    assert out["fs_path"] == "dbfs:/Volumes/main/landing/raw/notes/hello.txt"
    assert out["dbfs_volume"] == "hello"
    assert out["located"] == 3
    assert out["no_volume"].startswith("[VOLUME_NOT_FOUND] Volume `main`.`landing`.`never_created` does not exist")
    assert "VOLUME_NOT_FOUND" in out["no_volume_fs"]
    assert out["root_relative"] == 5 and out["fuse_view"] == 5 and out["fs_sees_spark"] is True
    assert out["dbfs_location"] is True
    assert out["missing"].startswith("[PATH_NOT_FOUND] Path does not exist: dbfs:/mnt/raw/missing.json")
    assert out["after_drop"] == ["raw"] and out["ext_kept"] is True  # an external volume's files stay
    # Everything landed inside the project.
    volumes = project / ".nbflow" / "volumes" / "main" / "landing"
    assert (volumes / "raw" / "notes" / "hello.txt").read_text() == "hello"
    assert (project / ".nbflow" / "dbfs" / "tmp" / "nums").is_dir()
    assert (project / ".nbflow" / "dbfs" / "tables" / "in_dbfs" / "_delta_log").is_dir()
    assert Registry(project).get("main.default.in_dbfs").location == str(  # type: ignore[union-attr]
        project / ".nbflow" / "dbfs" / "tables" / "in_dbfs")


@pytest.mark.jvm
def test_an_engine_with_one_catalog_serves_unity_catalog_names(project: Path) -> None:
    from nbflow import run_notebook

    from .conftest import NOTEBOOKS

    out = exit_json(run_notebook(NOTEBOOKS / "uc" / "one_engine_catalog.py", engine_name="spark"))
    assert out["current"] == ["dev", "dev"]
    assert out["catalogs"] == ["dev", "hive_metastore", "main", "system"]
    assert out["rows"] == [4, 4, 2]  # dev.silver.t kept its rows: main.silver.t was refused
    # The engine has one `silver` schema; each catalog lists its own tables (Databricks' view).
    assert out["listed"] == out["shown"] == {"dev": ["t"], "main": ["other"]}
    assert out["same_name"].startswith("[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table main.silver.t: on this "
                                       "engine one catalog serves every catalog, and dev.silver.t is the same")
    assert set(Registry(project).tables()) == {"dev.silver.t", "main.default.u", "main.silver.other"}


@pytest.mark.spark
def test_the_default_catalog_can_be_the_legacy_one_for_a_project_of_an_earlier_nbflow(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("spark/writer.py", {"table": "hive_metastore.default.legacy_t", "rows": "3"}).ok
    monkeypatch.setenv("NBFLOW_DEFAULT_CATALOG", "hive_metastore")
    assert run("uc/default_catalog.py").exit_value == "hive_metastore:3"
    monkeypatch.setenv("NBFLOW_DEFAULT_CATALOG", "nowhere")
    failed = run("uc/default_catalog.py")
    assert failed.status == "FAILED" and failed.error is not None
    assert "[NO_SUCH_CATALOG_EXCEPTION] Catalog 'nowhere' was not found: NBFLOW_DEFAULT_CATALOG" in failed.error.evalue
