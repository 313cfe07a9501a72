# Databricks notebook source
prepared = "before the failure"

# COMMAND ----------

# MAGIC %md
# MAGIC A markdown cell between code cells.

# COMMAND ----------

raise ValueError("boom in cell 2")

# COMMAND ----------

after = "never set"
