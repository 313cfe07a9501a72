# Databricks notebook source
import json

df = spark.range(5).selectExpr("id", "id * 10 AS value")
df.createOrReplaceTempView("numbers")
total = spark.sql("SELECT SUM(value) AS s FROM numbers").first()["s"]
display(df)

# COMMAND ----------

# MAGIC %sql
# MAGIC -- two statements: the last one's result is shown and kept as _sqldf
# MAGIC CREATE OR REPLACE TEMP VIEW big AS SELECT * FROM numbers WHERE value >= 20;
# MAGIC SELECT COUNT(*) AS n FROM big

# COMMAND ----------

n = _sqldf.first()["n"]
try:
    sc.parallelize([1])
    sc_error = None
except Exception as exc:
    sc_error = str(exc)
dbutils.notebook.exit(json.dumps({"total": total, "n": n, "sc_error": sc_error, "conf": spark.conf.get("spark.sql.shuffle.partitions")}))
