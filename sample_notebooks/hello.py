# Databricks notebook source
# MAGIC %md
# MAGIC # Hello from nbflow
# MAGIC A Databricks source notebook that runs unchanged on a laptop.

# COMMAND ----------

# DBTITLE 1,Parameters
dbutils.widgets.text("name", "world", "Who to greet")
dbutils.widgets.dropdown("shout", "no", ["yes", "no"])
name = dbutils.widgets.get("name")

# COMMAND ----------

greeting = f"Hello, {name}!"
if dbutils.widgets.get("shout") == "yes":
    greeting = greeting.upper()
print(greeting)
dbutils.jobs.taskValues.set("greeting", greeting)

# COMMAND ----------

import json

dbutils.notebook.exit(json.dumps({"greeting": greeting, "length": len(greeting)}))

# COMMAND ----------

print("never printed: exit ends the notebook")
