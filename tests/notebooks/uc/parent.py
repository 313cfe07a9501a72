# Databricks notebook source
# A parent and its dbutils.notebook.run child share a three-level table in a catalog of their own.
import json

spark.sql("CREATE CATALOG IF NOT EXISTS team")
spark.sql("CREATE SCHEMA IF NOT EXISTS team.silver")
spark.range(3).write.mode("overwrite").saveAsTable("team.silver.shared")
child_saw = dbutils.notebook.run("./child_reader", 120, {"table": "team.silver.shared"})
child_wrote = dbutils.notebook.run("./child_writer", 120, {"table": "team.silver.from_child"})
dbutils.notebook.exit(json.dumps({"child_saw": child_saw, "parent_saw": spark.table("team.silver.from_child").count(),
                                  "child_wrote": child_wrote}))
