"""Unity Catalog pieces without a cluster: names, the registry's format 3, statement rewriting, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow.catalog import Registry, normalize, split_name
from nbflow.errors import CatalogObjectError
from nbflow.runtime.paths import DatabricksPaths
from nbflow.runtime.unity import CatalogMap, classify, rewrite


def test_names_resolve_like_unity_catalog() -> None:
    assert normalize("t") == "main.default.t"
    assert normalize("s.t") == "main.s.t"  # two-level: the current catalog
    assert normalize("s.t", catalog="dev") == "dev.s.t"
    assert normalize("SPARK_CATALOG.Default.T") == "hive_metastore.default.t"
    assert split_name("`my cat`.`a``b`.c") == ["my cat", "a`b", "c"]
    with pytest.raises(CatalogObjectError, match="more than 3 parts"):
        normalize("a.b.c.d")


def test_a_registry_of_format_2_is_read_as_the_legacy_catalog(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.folder.mkdir(parents=True)
    entry = {"name": "sales.orders", "location": "/w/orders", "format": "delta", "managed": True, "updated_at": ""}
    import hashlib

    tables = {"sales.orders": entry}
    canonical = json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()
    checksum = "sha256:" + hashlib.sha256(canonical).hexdigest()
    registry.path.write_text(json.dumps({"version": 2, "generation": 4, "checksum": checksum, "tables": tables}))
    assert list(registry.tables()) == ["hive_metastore.sales.orders"]
    assert registry.get("spark_catalog.sales.orders") is not None
    assert "hive_metastore.sales" in registry.schemas()
    registry.register("main.default.new", "/w/new", "delta", True)  # the next change writes format 3
    data = json.loads(registry.path.read_text())
    assert data["version"] == 3 and set(data["tables"]) == {"hive_metastore.sales.orders", "main.default.new"}
    assert data["generation"] == 5


def test_catalog_schema_and_volume_objects_follow_databricks(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.create_catalog("Dev", "mine") is True
    assert registry.create_catalog("dev", if_not_exists=True) is False
    with pytest.raises(CatalogObjectError, match="CATALOG_ALREADY_EXISTS"):
        registry.create_catalog("dev")
    with pytest.raises(CatalogObjectError, match="NO_SUCH_CATALOG_EXCEPTION"):
        registry.create_schema("nowhere.s")
    registry.create_schema("dev.s")
    volume = registry.create_volume("dev.s.files")
    assert Path(volume.location) == tmp_path.resolve() / ".nbflow" / "volumes" / "dev" / "s" / "files"
    assert Path(volume.location).is_dir()
    registry.register("dev.s.t", str(tmp_path / "t"), "delta", True)
    with pytest.raises(CatalogObjectError, match="CATALOG_NOT_EMPTY"):
        registry.drop_catalog("dev")
    dropped = registry.drop_catalog("dev", cascade=True)
    assert [t.name for t in dropped] == ["dev.s.t"]
    assert "dev" not in registry.catalogs() and registry.volumes() == {} and not Path(volume.location).exists()
    with pytest.raises(CatalogObjectError, match="CANNOT_DROP_CATALOG"):
        registry.drop_catalog("main")
    with pytest.raises(CatalogObjectError, match="READ_ONLY_CATALOG"):
        registry.create_schema("system.x")


def test_statements_answered_from_the_registry_are_recognised() -> None:
    found = classify("-- comment\nCREATE CATALOG IF NOT EXISTS `my-cat` COMMENT 'x';")
    assert found is not None and found[0] == "create_catalog" and found[1]["name"] == "`my-cat`"
    assert classify("use catalog dev")[0] == "use_catalog"  # type: ignore[index]
    from nbflow.runtime.unity import one_name

    assert one_name("`main__build`") == "main__build" and one_name("'x y'") == "x y"
    assert one_name("`a`.b") == "`a`.b"
    assert classify("USE dev.silver")[0] == "use_schema"  # type: ignore[index]
    assert classify("SHOW VOLUMES IN main.raw LIKE 'a*'")[0] == "show_volumes"  # type: ignore[index]
    assert classify("CREATE EXTERNAL VOLUME v LOCATION '/x'")[0] == "create_volume"  # type: ignore[index]
    for engine_statement in ("SELECT 1", "CREATE TABLE t (id INT)", "SHOW TABLES", "DESCRIBE TABLE t",
                             "USE_COUNT = 1", "SET spark.sql.x = 1"):
        assert classify(engine_statement) is None, engine_statement


def test_rewriting_touches_only_catalog_names_and_path_positions() -> None:
    names = {"dev", "hive_metastore"}

    def resolve(name: str) -> str | None:
        return {"dev": "nbflow_spare_1", "hive_metastore": "spark_catalog"}.get(name)

    def paths(path: str) -> str:
        return "/p/dbfs/" + path.removeprefix("dbfs:").lstrip("/")

    statement = ("SELECT dev.s.t.id, 'dev.s.t' AS text, x.dev FROM dev.s.t JOIN `hive_metastore`.default.u "
                 "-- dev.s.t in a comment\nWHERE current_catalog() = 'dev'")
    assert rewrite(statement, names, resolve, "dev") == (
        "SELECT nbflow_spare_1.s.t.id, 'dev.s.t' AS text, x.dev FROM nbflow_spare_1.s.t JOIN spark_catalog.default.u "
        "-- dev.s.t in a comment\nWHERE 'dev' = 'dev'")
    located = "CREATE TABLE t (id INT) LOCATION 'dbfs:/tables/t' COMMENT 'dbfs:/not/a/path'"
    assert rewrite(located, set(), resolve, None, paths) == (
        "CREATE TABLE t (id INT) LOCATION '/p/dbfs/tables/t' COMMENT 'dbfs:/not/a/path'")
    assert rewrite("SELECT * FROM delta.`dbfs:/x`", set(), resolve, None, paths) == "SELECT * FROM delta.`/p/dbfs/x`"
    assert rewrite("SELECT * FROM read_files('dbfs:/in', format => 'csv')", set(), resolve, None, paths) == (
        "SELECT * FROM read_files('/p/dbfs/in', format => 'csv')")
    # Root-relative paths are DBFS paths in SQL too, as in Spark's readers and writers.
    assert rewrite("INSERT INTO delta.`/tmp/t` VALUES (1)", set(), resolve, None, paths) == (
        "INSERT INTO delta.`/p/dbfs/tmp/t` VALUES (1)")
    assert rewrite("CREATE TABLE t LOCATION '/x'", set(), resolve, None, paths) == "CREATE TABLE t LOCATION '/p/dbfs/x'"
    plain = "INSERT INTO t VALUES ('dbfs:/kept/as/data')"
    assert rewrite(plain, names, resolve, None, paths) == plain


def test_an_engine_with_one_catalog_serves_every_catalog_with_it() -> None:
    jvm = CatalogMap.from_engine(["spark_catalog"])
    assert jvm.collapsed and jvm.engine("main") == "spark_catalog" and jvm.engine("dev") == "spark_catalog"
    sail = CatalogMap.from_engine(["spark_catalog", "main", "system", "nbflow_spare_2", "nbflow_spare_1"])
    assert not sail.collapsed and sail.engine("main") == "main" and sail.engine("hive_metastore") == "spark_catalog"
    assert sail.engine("dev") == "nbflow_spare_1" and sail.engine("qa") == "nbflow_spare_2"
    assert sail.uc("nbflow_spare_1") == "dev" and sail.uc("spark_catalog") == "hive_metastore"
    with pytest.raises(CatalogObjectError, match="TOO_MANY_CATALOGS"):
        sail.engine("third")


def test_databricks_paths_land_in_the_project(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    paths = DatabricksPaths(tmp_path, tmp_path / ".nbflow" / "dbfs", registry)
    dbfs = tmp_path.resolve() / ".nbflow" / "dbfs"
    assert paths.local("dbfs:/a/b") == str(dbfs / "a" / "b")
    assert paths.local("/FileStore/x.csv") == str(dbfs / "FileStore" / "x.csv")
    assert paths.local("/dbfs/FileStore/x.csv") == str(dbfs / "FileStore" / "x.csv")
    workspace = tmp_path.resolve() / ".nbflow" / "workspace" / "tree"
    assert paths.local("/Workspace/Shared/c.json") == str(workspace / "Shared" / "c.json")
    inside = str(tmp_path.resolve() / "data" / "in.csv")
    assert paths.local(inside) == inside  # computed locally: left alone
    assert paths.local("relative/x") == "relative/x" and paths.local("s3://b/k") == "s3://b/k"
    with pytest.raises(CatalogObjectError, match="VOLUME_NOT_FOUND"):
        paths.local("/Volumes/main/default/v/f.txt", writing=True)
    registry.create_volume("main.default.v")
    assert paths.local("/Volumes/main/default/v/f.txt", writing=True) == str(
        tmp_path.resolve() / ".nbflow" / "volumes" / "main" / "default" / "v" / "f.txt")
    with pytest.raises(CatalogObjectError, match="leaves"):
        paths.local("dbfs:/../../etc/passwd")


def test_current_catalog_made_a_literal_keeps_its_column_name_in_a_select_list() -> None:
    # Real notebooks read spark.sql("SELECT current_catalog()").first()["current_catalog()"]
    # (dbdemos' setup does): the literal must not rename the column on the one-catalog JVM engine.
    def literal(statement: str) -> str:
        return rewrite(statement, set(), lambda name: None, "main")

    assert literal("SELECT current_catalog()") == "SELECT 'main' AS `current_catalog()`"
    assert literal("select current_catalog(), current_database()") == (
        "select 'main' AS `current_catalog()`, current_database()")
    assert literal("SELECT DISTINCT current_catalog() FROM t;") == (
        "SELECT DISTINCT 'main' AS `current_catalog()` FROM t;")
    # Anywhere else it stays a bare literal: an alias of its own, an argument, a comparison, an IN list.
    assert literal("SELECT current_catalog() AS c") == "SELECT 'main' AS c"
    assert literal("SELECT concat(current_catalog(), '.x')") == "SELECT concat('main', '.x')"
    assert literal("SELECT a FROM t WHERE x = current_catalog()") == "SELECT a FROM t WHERE x = 'main'"
    assert literal("SELECT * FROM t WHERE c IN (a, current_catalog())") == "SELECT * FROM t WHERE c IN (a, 'main')"
