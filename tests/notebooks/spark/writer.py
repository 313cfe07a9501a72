# Databricks notebook source
dbutils.widgets.text("table", "shared_t")
dbutils.widgets.text("rows", "7")
spark.range(int(dbutils.widgets.get("rows"))).write.format("delta").mode("overwrite").saveAsTable(dbutils.widgets.get("table"))
dbutils.notebook.exit(dbutils.widgets.get("table"))
