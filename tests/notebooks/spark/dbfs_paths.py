# Databricks notebook source
import json
spark.range(3).write.mode("overwrite").parquet("dbfs:/tmp/nbflow-spark/p")
spark.range(4).write.format("delta").mode("overwrite").save("dbfs:/tmp/nbflow-spark/d")
listed = sorted(f.name for f in dbutils.fs.ls("dbfs:/tmp/nbflow-spark/"))

# COMMAND ----------

try:
    spark.read.json("dbfs:/tmp/nbflow-spark/missing").count()
    missing = "no error"
except Exception as exc:
    missing = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
dbutils.notebook.exit(json.dumps({
    "parquet": spark.read.parquet("dbfs:/tmp/nbflow-spark/p").count(),
    "delta": spark.read.format("delta").load("dbfs:/tmp/nbflow-spark/d").count(),
    "listed": listed,
    "missing": missing,
}))
