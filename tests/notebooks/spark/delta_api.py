# Databricks notebook source
import json

from delta.tables import DeltaTable

spark.range(5).selectExpr("id", "CAST(id * 1.5 AS DOUBLE) AS v").write.format("delta").saveAsTable("dt")
t = DeltaTable.forName(spark, "dt")
out = {"is_delta_name_path": DeltaTable.isDeltaTable(spark, t.detail().first()["location"])}
t.update("id = 1", {"v": "100.0"})
t.delete("id = 4")
updates = spark.range(2, 8).selectExpr("id", "CAST(-1.0 AS DOUBLE) AS v")
(
    t.alias("t").merge(updates.alias("s"), "t.id = s.id")
    .whenMatchedUpdate(condition="s.id = 2", set={"v": "s.v"})
    .whenMatchedDelete(condition="s.id = 3")
    .whenNotMatchedInsert(condition="s.id < 7", values={"id": "s.id", "v": "0.5"})
    .whenNotMatchedBySourceDelete(condition="t.id = 0")
    .execute()
)
out["rows"] = sorted((r.id, r.v) for r in t.toDF().collect())
out["alias_cols"] = t.alias("x").toDF().select("x.id").count()
history = t.history()
out["history_ops"] = [r.operation for r in history.orderBy("version").collect()]
detail = t.detail().first()
out["detail"] = {"format": detail["format"], "version": t.history(1).first()["version"], "numFiles": detail["numFiles"] > 0}
p = DeltaTable.forPath(spark, detail["location"])
p.delete("id = 6")
out["after_path_delete"] = p.toDF().count()
try:
    t.update(condition=None, set={"v": __import__("pyspark.sql.functions", fromlist=["udf"]).udf(lambda x: x)("v")})
except Exception as exc:
    out["column_error"] = str(exc)
dbutils.notebook.exit(json.dumps(out))
