# Databricks notebook source
# MAGIC %run ../lib/constants

# COMMAND ----------

dbutils.notebook.exit(SUFFIX * 3)
