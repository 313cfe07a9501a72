# Databricks notebook source
# Another kernel (another Spark session) after changes made behind the engine's back.
import json

dbutils.widgets.text("table", "ds")
dbutils.widgets.text("unset", "")
name = dbutils.widgets.get("table")
if dbutils.widgets.get("unset"):  # a property another session set
    spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('{dbutils.widgets.get('unset')}')")
dbutils.notebook.exit(json.dumps({
    "rows": spark.table(name).count(),
    "last_op": spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first().operation,
    "props": {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()},
}))
