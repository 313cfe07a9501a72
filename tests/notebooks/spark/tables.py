# Databricks notebook source
import json

out = {}
spark.range(3).write.format("delta").mode("overwrite").saveAsTable("modes")
spark.range(3).write.format("delta").mode("append").saveAsTable("modes")
spark.range(100).write.format("delta").mode("ignore").saveAsTable("modes")
try:
    spark.range(1).write.format("delta").mode("error").saveAsTable("modes")
    out["error_mode"] = "no error"
except Exception as exc:
    out["error_mode"] = "raised"
out["modes"] = spark.table("modes").count()

# COMMAND ----------

# MAGIC %sql
# MAGIC CREATE SCHEMA IF NOT EXISTS shop;
# MAGIC CREATE TABLE IF NOT EXISTS shop.orders (id BIGINT, amount DOUBLE) USING DELTA;
# MAGIC INSERT INTO shop.orders VALUES (1, 10.0), (2, 20.0), (3, 30.0);
# MAGIC MERGE INTO shop.orders AS t USING (SELECT 2L AS id, 99.0 AS amount UNION ALL SELECT 4L, 40.0) AS s
# MAGIC   ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount WHEN NOT MATCHED THEN INSERT *;
# MAGIC UPDATE shop.orders SET amount = 0 WHERE id = 1;
# MAGIC DELETE FROM shop.orders WHERE id = 3

# COMMAND ----------

out["orders"] = sorted((r.id, float(r.amount)) for r in spark.table("shop.orders").collect())
out["three_level"] = spark.table("main.shop.orders").count()
out["read_table"] = spark.read.table("shop.orders").count()
out["version0"] = spark.read.format("delta").option("versionAsOf", 0).table("shop.orders").count()
path = dbutils.fs.local_path("dbfs:/delta/points")
spark.range(4).write.format("delta").mode("overwrite").save(str(path))
spark.range(2).write.format("delta").mode("append").save(str(path))
out["path_rows"] = spark.read.format("delta").load(str(path)).count()
out["path_v0"] = spark.read.format("delta").option("versionAsOf", 0).load(str(path)).count()
# The first commit's time as the engine's own history gives it: real Delta (the JVM engine) travels
# by the commit file's time, a little after the commitInfo timestamp delta-rs reports.
first = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").first()
as_of = first["timestamp"].strftime("%Y-%m-%d %H:%M:%S.%f")
out["path_ts0"] = spark.read.format("delta").option("timestampAsOf", as_of).load(str(path)).count()
out["path"] = str(path)
spark.sql("CREATE TABLE dropme USING DELTA AS SELECT 1 AS a")
spark.sql("DROP TABLE dropme")
dbutils.notebook.exit(json.dumps(out))
