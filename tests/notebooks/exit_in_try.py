# Databricks notebook source
try:
    dbutils.notebook.exit("exited inside try")
except Exception:
    dbutils.notebook.exit("caught by except Exception")

# COMMAND ----------

raise RuntimeError("this cell must not run")
