# Databricks notebook source
dbutils.widgets.text("defined", "yes")

# COMMAND ----------

value = dbutils.widgets.get("missing")
