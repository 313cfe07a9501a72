# Databricks notebook source
# nbflow's DeltaTable on Sail: restore, optimize, vacuum, and Column conditions.
import datetime
import json

from delta.tables import DeltaTable
from pyspark.sql import functions as F

out = {}
spark.range(4).selectExpr("id", "CAST(id * 10 AS DOUBLE) AS v", "IF(id < 2, 'x', 'y') AS p") \
    .write.format("delta").partitionBy("p").saveAsTable("api")          # version 0
for n in range(3):                                                       # versions 1..3: more small files
    spark.range(10 + n, 11 + n).selectExpr("id", "0.0 AS v", "'x' AS p").write.mode("append").saveAsTable("api")
t = DeltaTable.forName(spark, "api")

# Column conditions everywhere a string is accepted.
t.update(condition=F.col("id") == 1, set={"v": F.col("v") + F.lit(0.5)})                      # version 4
t.delete(F.col("id").isin(12, 13) | (F.col("v") < F.lit(0)))                                  # version 5
source = spark.createDataFrame([(2, 99.0, "y"), (3, -1.0, "y"), (7, 7.0, "x")], "id long, v double, p string")
(
    t.alias("t").merge(source.alias("s"), F.col("t.id") == F.col("s.id"))
    .whenMatchedUpdate(condition=F.col("s.v") > 1, set={"v": F.col("s.v") * 2})
    .whenMatchedDelete(condition=source["v"] < 0)
    .whenNotMatchedInsert(values={"id": F.col("s.id"), "v": F.lit(7.5), "p": F.lit("x")})
    .execute()
)                                                                                               # version 6
out["rows"] = sorted((r.id, r.v) for r in t.toDF().collect())
out["ops"] = [r.operation for r in t.history().orderBy("version").collect()]
out["history_columns"] = t.history().columns
out["detail_name"] = t.detail().first().name
try:
    t.update(condition=F.udf(lambda x: x > 1, "boolean")("id"), set={"v": F.lit(1.0)})
except Exception as exc:
    out["udf_error"] = f"{type(exc).__name__}: {exc}"

# COMMAND ----------

files_before = t.detail().first().numFiles
compacted = t.optimize().where("p = 'x'").executeCompaction()
out["compaction"] = {"columns": compacted.columns, "removed": compacted.first().metrics.numFilesRemoved}
t.optimize().executeZOrderBy("id")
out["files"] = [files_before, t.detail().first().numFiles]
restored = t.restoreToVersion(0)
out["restore"] = {"rows": t.toDF().count(), "columns": restored.columns, "last": t.history(1).first().operation}
v1 = [r.timestamp for r in t.history().collect() if r.version == 1][0]
t.restoreToTimestamp(str(v1))
out["restore_ts_rows"] = spark.table("api").count()
try:
    t.vacuum(0)
except Exception as exc:
    out["vacuum_refused"] = type(exc).__name__
spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
out["vacuum"] = t.vacuum(0).columns
out["after_vacuum_rows"] = spark.table("api").count()
p = DeltaTable.forPath(spark, t.detail().first().location)
p.delete(F.col("id") == F.lit(0))
out["path_rows"] = p.toDF().count()
out["path_detail_name"] = p.detail().first().name
dbutils.notebook.exit(json.dumps(out))
