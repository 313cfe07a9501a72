"""Unity Catalog locally: catalogs, schemas, volumes and three-level names, in real notebooks on Sail."""

from __future__ import annotations

import json
from pathlib import Path

from nbflow import cluster
from nbflow.catalog import Registry

from .conftest import cli, exit_json, run


def test_catalogs_schemas_and_three_level_names(project: Path) -> None:
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


def test_parent_child_share_a_catalog_across_a_restart_and_later_runs(project: Path) -> None:
    out = exit_json(run("uc/parent.py"))
    assert out == {"child_saw": "3", "parent_saw": 5, "child_wrote": "team"}
    # The cluster was started before `team` existed: a spare catalog served it. After a restart
    # the engine serves it under its own name; the tables are the same.
    assert cluster.stop(project)
    assert run("uc/child_reader.py", {"table": "team.silver.shared"}).exit_value == "3"
    state = cluster.status(project)
    assert state is not None
    assert run("uc/child_reader.py", {"table": "team.silver.from_child"}).exit_value == "5"
