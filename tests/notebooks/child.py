# Databricks notebook source
dbutils.widgets.text("x", "1")
dbutils.widgets.text("caller", "nobody")

# COMMAND ----------

secret_of_child = "not visible to the parent"
x = int(dbutils.widgets.get("x"))
dbutils.notebook.exit(str(x * 2))
