# Databricks notebook source
dbutils.widgets.text("table", "")
spark.sql("USE CATALOG team")
spark.range(5).write.mode("overwrite").saveAsTable(dbutils.widgets.get("table"))
dbutils.notebook.exit(spark.catalog.currentCatalog())
