# Databricks notebook source
# MAGIC %run ./include_me $who="nbflow"

# COMMAND ----------

included = _sqldf.first()["text"]

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT ${greeting} AS g

# COMMAND ----------

import json

child = dbutils.notebook.run("./report", 120, {"region": "south", "unit": "lb"})
dbutils.notebook.exit(json.dumps({"included": included, "after": _sqldf.first()["g"], "child": json.loads(child)}))
