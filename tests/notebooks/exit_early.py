# Databricks notebook source
before = 1

# COMMAND ----------

dbutils.notebook.exit("done early")

# COMMAND ----------

raise RuntimeError("this cell must not run")
