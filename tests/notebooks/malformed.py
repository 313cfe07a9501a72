# Databricks notebook source
x = 1

# COMMAND ----------

# MAGIC %md
this line lacks the MAGIC prefix
