# Databricks notebook source
# Spark queries in a loop for `seconds` after the first one answers; a line in dbfs:/looping/<name>
# says the loop runs (one line per attempt).
import os
import time

dbutils.widgets.text("name", "loop")
dbutils.widgets.text("seconds", "8")
marker = dbutils.fs.local_path(f"dbfs:/looping/{dbutils.widgets.get('name')}")
os.makedirs(os.path.dirname(marker), exist_ok=True)
queries = 0
deadline = None
while deadline is None or time.monotonic() < deadline:
    spark.range(1000).selectExpr("sum(id) AS s").collect()
    queries += 1
    if deadline is None:
        deadline = time.monotonic() + float(dbutils.widgets.get("seconds"))
        with open(marker, "a") as handle:
            handle.write("looping\n")
dbutils.notebook.exit(str(queries))
