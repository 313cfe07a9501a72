# Databricks notebook source
# MAGIC %run ./lib/helpers $greeting="hi there"

# COMMAND ----------

first = shout("world")

# COMMAND ----------

# MAGIC %run "./lib/helpers"

# COMMAND ----------

import json

second = shout("again")
dbutils.notebook.exit(json.dumps({"first": first, "second": second, "suffix": SUFFIX}))
