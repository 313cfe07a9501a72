"""Delta SQL and DeltaTable maintenance on both engines: on Sail answered by nbflow with delta-rs
(Sail cannot parse them), on the JVM engine run by delta-spark; permission statements as no-ops;
one-line errors for statements the engine cannot parse. Real kernels, real notebooks.

Where the engines differ the tests say which one Databricks agrees with: delta-spark, as a rule."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from .conftest import exit_json, run

pytestmark = [pytest.mark.kernel, pytest.mark.spark]

HISTORY_COLUMNS = ["version", "timestamp", "userId", "userName", "operation", "operationParameters", "job",
                   "notebook", "clusterId", "readVersion", "isolationLevel", "isBlindAppend", "operationMetrics",
                   "userMetadata", "engineInfo"]
DETAIL_COLUMNS = ["format", "id", "name", "description", "location", "createdAt", "lastModified", "partitionColumns",
                  "clusteringColumns", "numFiles", "sizeInBytes", "properties", "minReaderVersion", "minWriterVersion",
                  "tableFeatures", "statistics"]
RESTORE_COLUMNS = ["table_size_after_restore", "num_of_files_after_restore", "num_removed_files",
                   "num_restored_files", "removed_files_size", "restored_files_size"]


def _stderr_lines(output: str) -> list[str]:
    nb = nbformat.read(output, as_version=4)
    return [line for cell in nb.cells for o in cell.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr" for line in o["text"].splitlines()]


def test_delta_sql_statements_on_both_engines(project: Path, engine: str) -> None:
    out = exit_json(run("delta/sql_statements.py"))
    sail = engine == "sail"
    # DESCRIBE HISTORY / DETAIL with Databricks' columns, by one-, two- and three-part names and in %sql
    assert out["history_columns"] == HISTORY_COLUMNS
    assert out["history_versions"] == [4, 3, 2, 1, 0]
    assert out["history_ops"][-1] == "CREATE TABLE" and out["history_ops"][0] == "WRITE"
    assert out["history_limit"] == [4]
    assert out["history_3part"] == 5
    assert out["sql_magic_rows"] == 2
    # Databricks' DESCRIBE DETAIL ends with `statistics`, which delta-spark (OSS) does not give.
    assert out["detail_columns"] == (DETAIL_COLUMNS if sail else DETAIL_COLUMNS[:-1])
    detail = out["detail"]
    # Unity Catalog's name on both (delta-spark's own row says spark_catalog.default.ds; nbflow renames
    # it). The location is a URI on the JVM engine, as on Databricks (dbfs:/..., s3://...), a path on Sail.
    assert {k: detail[k] for k in ("format", "name", "partitionColumns", "sizeInBytes_positive", "minWriterVersion",
                                   "location_is_dir", "location_uri")} == {
        "format": "delta", "name": "main.default.ds", "partitionColumns": ["p"], "sizeInBytes_positive": True,
        "minWriterVersion": 2, "location_is_dir": True, "location_uri": not sail}
    # Files per insert: one per partition on Sail, one per partition and task (cores) on the JVM.
    assert detail["numFiles"] == 8 if sail else detail["numFiles"] >= 8
    assert out["by_path"] == [5, detail["numFiles"]]
    assert len(out["dbfs_path"]) == 1 and out["dbfs_detail_name"] is None
    # properties round-trip, by name and by path, read back from the log
    assert out["props_after_set"]["team"] == "sales"
    assert out["props_after_set"]["delta.logRetentionDuration"] == "interval 30 days"
    assert out["props_after_set"]["delta.minReaderVersion"] == "1"
    assert out["prop_one"] == [["team", "sales"]]
    # Difference: Spark names the table by the engine's catalog in this message (Databricks: Unity Catalog's).
    assert out["prop_missing"] == f"Table {'main' if sail else 'spark_catalog'}.default.ds does not have property: nope"
    assert "team" not in out["props_after_unset"] and "by_path" in out["props_after_unset"]
    assert out["detail_properties"] == {"delta.logRetentionDuration": "interval 30 days"}
    assert out["tables_after_path_alter"] == ["ds"]  # the path's private name for the ALTER is gone
    # RESTORE by version and by timestamp; later reads see the restored version
    assert out["restore_columns"] == RESTORE_COLUMNS
    restore = out["restore"]
    assert {k: restore[k] for k in ("before", "after", "restored", "last_op")} == {
        "before": 40, "after": 20, "restored": 0, "last_op": "RESTORE"}
    assert restore["files_after"] == restore["removed"] == (4 if sail else detail["numFiles"] // 2)
    assert out["restore_timestamp_count"] == 30
    assert out["props_after_restore"] == {}  # RESTORE brings back the version's metadata too
    # delta-spark's errors (Databricks' too) for a time before the first commit or after the last
    assert out["restore_too_early"][0] == "DELTA_CANNOT_RESTORE_TIMESTAMP_EARLIER"
    assert out["restore_too_early"][1].startswith("[DELTA_CANNOT_RESTORE_TIMESTAMP_EARLIER] Cannot restore table "
                                                  "to timestamp (2000-01-01 00:00:00")
    assert out["restore_too_late"][0] == "DELTA_CANNOT_RESTORE_TIMESTAMP_GREATER"
    # OPTIMIZE: partition filter, fewer files, same rows, Z-order; only partition columns in WHERE
    assert out["optimize_columns"] == ["path", "metrics"]
    where = out["optimize_where"]
    assert where["added"] == 1 and where["partitions"] == 1
    assert where["removed"] == 3 if sail else where["removed"] >= 3
    assert out["optimize_files"][0] > 2 and out["optimize_files"][1] == 2
    assert out["optimize_rows"] == 30
    assert out["zorder"] == 3
    assert out["optimize_non_partition"].startswith("[DELTA_NON_PARTITION_COLUMN_REFERENCE] Predicate references "
                                                    "non-partition column 'id'. Only the partition columns may be "
                                                    "referenced: [p]")
    assert out["ops_now"] == ["OPTIMIZE", "WRITE", "OPTIMIZE"]
    # VACUUM: refused under 168 hours until the check is off, as on Databricks; the dry run lists
    # the files the real one then deletes
    refused = out["vacuum_refused"]
    assert refused[:2] == ["IllegalArgumentException", "DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT"]
    assert "delta.retentionDurationCheck.enabled = false" in refused[2] and "at least 168 hours" in refused[2]
    assert out["vacuum_dry"]["listed"] > 0 and out["vacuum_dry"]["all_exist"]
    assert out["vacuum_result"] is True
    assert out["vacuum_after"] == {"on_disk": out["vacuum_dry"]["on_disk"] - out["vacuum_dry"]["listed"],
                                   "gone": True, "rows": 31, "files": out["vacuum_after"]["on_disk"]}
    # CLONE: a copy at a version, independent of its source
    assert out["clone_columns"] == ["source_table_size", "source_num_of_files", "num_removed_files",
                                    "num_copied_files", "removed_files_size", "copied_files_size"]
    assert out["clone"]["rows"] == 5 and out["clone"]["source_files"] == out["clone"]["copied"] >= 1
    assert out["clone"]["source_size_positive"]
    # Difference: a shallow clone copies no file with delta-spark, as on Databricks; on Sail nbflow copies.
    assert out["clone_shallow"] >= 1 if sail else out["clone_shallow"] == 0
    assert out["clone_if_not_exists"] == 0
    assert out["clone_rows"] == [8, 6]
    assert out["not_found"][0] == "TABLE_OR_VIEW_NOT_FOUND" and "`nosuch`.`missing_t`" in out["not_found"][1]

    # Another kernel (another Spark session) sees the commits of the first (delta-rs's behind Sail's
    # back), and the clone is a table of the catalog like any other.
    other = exit_json(run("delta/reader.py", {"table": "ds"}))
    assert other["rows"] == 31 and other["last_op"] == "SET TBLPROPERTIES"
    assert other["props"]["team"] == "ops"
    # Sail checks an UNSET key against what its session saw when it attached the table: the
    # property set by the first session is unset here, without a "not found" after the commit.
    unset = exit_json(run("delta/reader.py", {"table": "ds", "unset": "team"}))
    assert "team" not in unset["props"] and unset["last_op"] == "UNSET TBLPROPERTIES"
    assert exit_json(run("delta/reader.py", {"table": "src_copy"}))["rows"] == 6


def test_permission_statements_are_no_ops_and_parse_errors_are_one_line(project: Path, engine: str) -> None:
    result = run("delta/permissions_and_errors.py")
    out = json.loads(result.variables["out_json"]["value"])
    assert out["results"] == {"GRANT": [], "REVOKE": [], "DENY": [], "ALTER": []}
    assert out["grants"] == [["principal", "actionType", "objectType", "objectKey"], 0]
    assert out["granted_rows"] == 1
    warnings = [line for line in _stderr_lines(result.output) if line.startswith("nbflow:")]
    # one line per kind, however often the kind runs (GRANT ran 3 times, once from %sql)
    assert sorted(warnings) == sorted([
        "nbflow: GRANT is a no-op locally: one local user",
        "nbflow: REVOKE is a no-op locally: one local user",
        "nbflow: DENY is a no-op locally: one local user",
        "nbflow: ALTER ... OWNER TO is a no-op locally: one local user",
        "nbflow: SHOW GRANTS is a no-op locally: one local user, no grants (empty result)",
    ])
    errors = out["errors"]
    if engine == "spark":
        # Spark parses these two, as Databricks does: a column `granted` of a table `HISTORIES`, and
        # OPTIMIZE FULL (for clustered tables only); Sail cannot parse them.
        history, full = errors.pop("DESCRIBE HISTORIES granted"), errors.pop("OPTIMIZE granted FULL")
        assert history["class"] == "TABLE_OR_VIEW_NOT_FOUND" and "`HISTORIES`" in history["message"]
        assert not history["parse"] and history["analysis"]
        assert full["class"] == "DELTA_OPTIMIZE_FULL_NOT_SUPPORTED" and not full["parse"]
    name, lead = {"sail": ("Sail", "nbflow runs instead"), "spark": ("Spark", "Spark with Delta runs")}[engine]
    for statement, error in errors.items():
        message = error["message"]
        assert "\n" not in message and "expected" not in message, message  # not the parser's dump
        assert message.startswith(f"[PARSE_SYNTAX_ERROR] {name} cannot parse \""), message
        assert f"; {lead}: " in message, message
        assert error["parse"] is True and error["class"] == "PARSE_SYNTAX_ERROR"
        assert " ".join(statement.split("\n")[-1].split())[:40] in message
    if engine == "sail":
        assert "nbflow runs instead: DESCRIBE [TABLE] [EXTENDED] t, DESCRIBE HISTORY t" in \
            errors["DESCRIBE HISTORIES granted"]["message"]
        assert "at 'HISTORIES' (line 1, pos 9)" in errors["DESCRIBE HISTORIES granted"]["message"]
        assert "nbflow runs instead: OPTIMIZE t [WHERE" in errors["OPTIMIZE granted FULL"]["message"]
        assert "DESCRIBE HISTORY|DETAIL t, SHOW TBLPROPERTIES t, RESTORE, OPTIMIZE, VACUUM" in \
            errors["SELEC 1"]["message"]
    else:  # delta-spark runs the Delta commands: nbflow answers only deep clones and the no-ops
        assert errors["SELEC 1"]["message"].endswith(
            "Spark with Delta runs: Spark SQL with Delta Lake's commands (DESCRIBE HISTORY|DETAIL t, SHOW "
            "TBLPROPERTIES t, RESTORE, OPTIMIZE, VACUUM, CREATE TABLE ... SHALLOW CLONE), plus (answered by nbflow) "
            "CREATE TABLE ... [DEEP] CLONE and GRANT/REVOKE/DENY/OWNER TO (no-ops)")
    assert "(line 2, pos " in errors["-- a comment first\nCREATE TABLE x (id INT) USING delta WITH (wat)"]["message"]
    # uncaught, the failing cell shows one line naming the statement and the supported form
    assert result.status == "FAILED"
    assert result.error.ename == "UnsupportedStatement"
    assert result.error.evalue == {
        "sail": "[PARSE_SYNTAX_ERROR] Sail cannot parse \"VACUUM granted RETAIN FOREVER\" at 'VACUUM' (line 1, pos 0); "
                "nbflow runs instead: VACUUM t [LITE|FULL] [RETAIN n HOURS] [DRY RUN]",
        "spark": "[PARSE_SYNTAX_ERROR] Spark cannot parse \"VACUUM granted RETAIN FOREVER\" at 'VACUUM' (line 1, "
                 "pos 0); Spark with Delta runs: VACUUM t [LITE|FULL] [USING INVENTORY ...] [RETAIN n HOURS] [DRY RUN]",
    }[engine]


def test_delta_table_maintenance_and_column_conditions(project: Path, engine: str) -> None:
    out = exit_json(run("delta/table_api.py"))
    # 0..3 (v = 10 id) + 10, 11, 12; update id 1 -> 10.5; delete 12 (13 absent); merge: 2 -> 198,
    # 3 deleted (source v < 0), 7 inserted with 7.5
    assert out["rows"] == [[0, 0.0], [1, 10.5], [2, 198.0], [7, 7.5], [10, 0.0], [11, 0.0]]
    assert out["ops"][-3:] == ["UPDATE", "DELETE", "MERGE"]
    assert out["history_columns"][:5] == ["version", "timestamp", "userId", "userName", "operation"]
    assert out["detail_name"] == "main.default.api"  # Unity Catalog's, on both engines
    assert out["udf_error"].startswith("ColumnNotExpressible: condition: the Python UDF <lambda>(...) has no SQL form")
    assert out["compaction"]["columns"] == ["path", "metrics"] and out["compaction"]["removed"] > 1
    assert out["files"][1] < out["files"][0]
    assert out["restore"] == {"rows": 4, "columns": RESTORE_COLUMNS, "last": "RESTORE"}
    assert out["restore_ts_rows"] == 5
    assert out["vacuum_refused"] == "IllegalArgumentException"
    assert out["vacuum"] == ["path"] and out["after_vacuum_rows"] == 5
    assert out["path_rows"] == 4 and out["path_detail_name"] is None
