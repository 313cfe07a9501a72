# Databricks notebook source
dbutils.widgets.text("seconds", "30")

# COMMAND ----------

import time

started = "sleeping"
time.sleep(float(dbutils.widgets.get("seconds")))
dbutils.notebook.exit("woke up")
