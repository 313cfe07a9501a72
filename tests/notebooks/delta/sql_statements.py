# Databricks notebook source
# Delta SQL: on Sail answered by nbflow (delta-rs behind the engine), on the JVM engine by delta-spark.
import json
import os

out = {}
# A table's location is a URI on the JVM engine (file:/..., as dbfs:/... or s3://... on Databricks), a path on Sail.
local = lambda p: p[len("file:"):] if p.startswith("file:") else p  # noqa: E731
spark.sql("CREATE TABLE ds (id BIGINT, p STRING) PARTITIONED BY (p)")
for start in (0, 10, 20, 30):  # versions 1..4, several small files per partition
    spark.sql(f"INSERT INTO ds SELECT id, IF(id % 2 = 0, 'a', 'b') FROM range({start}, {start + 10})")
history = spark.sql("DESCRIBE HISTORY ds")
out["history_columns"] = history.columns
out["history_versions"] = [r.version for r in history.collect()]
out["history_ops"] = [r.operation for r in history.collect()]
out["history_limit"] = [r.version for r in spark.sql("DESCRIBE HISTORY default.ds LIMIT 1").collect()]
out["history_3part"] = spark.sql("DESCRIBE HISTORY main.default.ds").count()
detail = spark.sql("DESCRIBE DETAIL ds")
d = detail.first()
out["detail_columns"] = detail.columns
out["detail"] = {"format": d.format, "name": d.name, "partitionColumns": d.partitionColumns, "numFiles": d.numFiles,
                 "sizeInBytes_positive": d.sizeInBytes > 0, "minWriterVersion": d.minWriterVersion,
                 "location_is_dir": os.path.isdir(local(d.location)), "location_uri": d.location.startswith("file:")}
location = d.location
out["by_path"] = [spark.sql(f"DESCRIBE HISTORY delta.`{location}`").count(),
                  spark.sql(f"DESCRIBE DETAIL '{location}'").first().numFiles]
spark.range(3).write.format("delta").save("dbfs:/delta_commands/t")
out["dbfs_path"] = [r.operation for r in spark.sql("DESCRIBE HISTORY delta.`dbfs:/delta_commands/t`").collect()]
out["dbfs_detail_name"] = spark.sql("DESCRIBE DETAIL delta.`dbfs:/delta_commands/t`").first().name

# COMMAND ----------

# MAGIC %sql
# MAGIC -- a %sql cell goes through the same spark.sql
# MAGIC DESCRIBE HISTORY ds LIMIT 2

# COMMAND ----------

out["sql_magic_rows"] = _sqldf.count()
# Properties: the engine sets them on a name, nbflow on a path; SHOW TBLPROPERTIES reads the log.
spark.sql("ALTER TABLE ds SET TBLPROPERTIES ('team' = 'sales', 'delta.logRetentionDuration' = 'interval 30 days')")
out["props_after_set"] = {r.key: r.value for r in spark.sql("SHOW TBLPROPERTIES ds").collect()}
out["prop_one"] = [tuple(r) for r in spark.sql("SHOW TBLPROPERTIES ds ('team')").collect()]
out["prop_missing"] = spark.sql("SHOW TBLPROPERTIES ds ('nope')").first().value
spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ('by_path' = 'yes')")
spark.sql("ALTER TABLE ds UNSET TBLPROPERTIES ('team')")
out["props_after_unset"] = sorted(r.key for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{location}`").collect())
spark.sql(f"ALTER TABLE delta.`{location}` UNSET TBLPROPERTIES ('by_path')")
out["detail_properties"] = spark.sql("DESCRIBE DETAIL ds").first().properties
out["tables_after_path_alter"] = sorted(t.name for t in spark.catalog.listTables())

# COMMAND ----------

# RESTORE: back to version 2 (20 rows), by version and by timestamp.
count_before = spark.table("ds").count()
restored = spark.sql("RESTORE TABLE ds TO VERSION AS OF 2")
out["restore_columns"] = restored.columns
metrics = restored.first()
out["restore"] = {"before": count_before, "after": spark.table("ds").count(),
                  "files_after": metrics.num_of_files_after_restore, "removed": metrics.num_removed_files,
                  "restored": metrics.num_restored_files, "last_op": spark.sql("DESCRIBE HISTORY ds LIMIT 1").first().operation}
v3_time = [r.timestamp for r in spark.sql("DESCRIBE HISTORY ds").collect() if r.version == 3][0]
spark.sql(f"RESTORE ds TO TIMESTAMP AS OF '{v3_time.isoformat(sep=' ')}'")
out["restore_timestamp_count"] = spark.sql("SELECT count(*) AS n FROM ds").first().n
out["props_after_restore"] = spark.sql("DESCRIBE DETAIL ds").first().properties  # as at that version
for when, key in (("2000-01-01", "restore_too_early"), ("2999-01-01", "restore_too_late")):
    try:
        spark.sql(f"RESTORE TABLE ds TO TIMESTAMP AS OF '{when}'")
    except Exception as exc:
        out[key] = [exc.getCondition(), str(exc).splitlines()[0]]

# COMMAND ----------

# OPTIMIZE: fewer files, same rows; WHERE on partitions only; ZORDER BY.
files_before = spark.sql("DESCRIBE DETAIL ds").first().numFiles
optimized = spark.sql("OPTIMIZE ds WHERE p = 'a'")
out["optimize_columns"] = optimized.columns
m = optimized.first().metrics
out["optimize_where"] = {"removed": m.numFilesRemoved, "added": m.numFilesAdded, "partitions": m.partitionsOptimized}
spark.sql("OPTIMIZE ds")
out["optimize_files"] = [files_before, spark.sql("DESCRIBE DETAIL ds").first().numFiles]
out["optimize_rows"] = spark.table("ds").count()
spark.sql("INSERT INTO ds VALUES (100, 'a')")
out["zorder"] = spark.sql("OPTIMIZE ds ZORDER BY (id)").first().metrics.numFilesRemoved
try:
    spark.sql("OPTIMIZE ds WHERE id > 3")
except Exception as exc:
    out["optimize_non_partition"] = str(exc).splitlines()[0]
out["ops_now"] = [r.operation for r in spark.sql("DESCRIBE HISTORY ds LIMIT 3").collect()]

# COMMAND ----------

# VACUUM: Databricks' retention check, then a dry run that lists files, then the real one.
try:
    spark.sql("VACUUM ds RETAIN 0 HOURS DRY RUN")
except Exception as exc:
    out["vacuum_refused"] = [type(exc).__name__, exc.getCondition(), str(exc)]
spark.sql("SET spark.databricks.delta.retentionDurationCheck.enabled = false")
dry = [r.path for r in spark.sql("VACUUM ds RETAIN 0 HOURS DRY RUN").collect()]
on_disk = lambda: sorted(os.path.join(d, f) for d, _, fs in os.walk(local(location)) if "_delta_log" not in d  # noqa: E731
                         for f in fs if f.endswith(".parquet"))
before_vacuum = on_disk()
out["vacuum_dry"] = {"listed": len(dry), "all_exist": all(os.path.exists(local(p)) for p in dry), "on_disk": len(before_vacuum)}
out["vacuum_result"] = [r.path for r in spark.sql("VACUUM ds RETAIN 0 HOURS").collect()] == [location]
out["vacuum_after"] = {"on_disk": len(on_disk()), "gone": not any(os.path.exists(local(p)) for p in dry),
                       "rows": spark.table("ds").count(), "files": spark.sql("DESCRIBE DETAIL ds").first().numFiles}

# COMMAND ----------

# CLONE: a copy at a version, through the engine (a new managed table in the catalog).
spark.sql("CREATE TABLE src AS SELECT id FROM range(5)")
spark.sql("INSERT INTO src SELECT id FROM range(5, 8)")
cloned = spark.sql("CREATE TABLE src_v0 DEEP CLONE src VERSION AS OF 0")
out["clone_columns"] = cloned.columns
c = cloned.first()
out["clone"] = {"rows": spark.table("src_v0").count(), "source_files": c.source_num_of_files,
                "copied": c.num_copied_files, "source_size_positive": c.source_table_size > 0}
out["clone_shallow"] = spark.sql("CREATE TABLE src_copy SHALLOW CLONE src").first().num_copied_files
out["clone_if_not_exists"] = spark.sql("CREATE TABLE IF NOT EXISTS src_copy CLONE src VERSION AS OF 0").first().num_copied_files
spark.sql("CREATE OR REPLACE TABLE src_copy CLONE src VERSION AS OF 0")
spark.sql("INSERT INTO src_copy VALUES (99)")
out["clone_rows"] = [spark.table("src").count(), spark.table("src_copy").count()]
spark.sql("REFRESH TABLE src")
spark.sql("ALTER TABLE ds SET TBLPROPERTIES ('team' = 'ops')")

# COMMAND ----------

# An unknown table is Spark's TABLE_OR_VIEW_NOT_FOUND, named as written.
from pyspark.errors import AnalysisException

try:
    spark.sql("DESCRIBE HISTORY nosuch.missing_t")
except AnalysisException as exc:
    out["not_found"] = [exc.getCondition(), str(exc).splitlines()[0]]
dbutils.notebook.exit(json.dumps(out, default=str))
