# Databricks notebook source
import json

spark.range(3).write.format("delta").saveAsTable("from_parent")
seen_by_child = dbutils.notebook.run("./reader", 120, {"table": "from_parent"})
dbutils.notebook.run("./writer", 120, {"table": "from_child", "rows": "5"})
seen_by_parent = spark.table("from_child").count()
dbutils.notebook.exit(json.dumps({"child_saw": seen_by_child, "parent_saw": seen_by_parent}))
