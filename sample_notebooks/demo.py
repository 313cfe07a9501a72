# Databricks notebook source
# MAGIC %md
# MAGIC # The demo: set up the sales table, then run the five workers sequentially and in parallel

# COMMAND ----------

dbutils.widgets.text("rows", "1000000", "Number of sales rows")

# COMMAND ----------

import json

setup = json.loads(dbutils.notebook.run("./setup", 3600, {"rows": dbutils.widgets.get("rows")}))
sequential = json.loads(dbutils.notebook.run("./orchestrate_sequential", 3600))
parallel = json.loads(dbutils.notebook.run("./orchestrate_parallel", 3600))

# COMMAND ----------

print(f"{'worker':<28}{'sequential s':>14}{'parallel s':>12}{'inserted':>10}{'updated':>9}")
for name, seq in sequential["workers"].items():
    par = parallel["workers"][name]
    print(f"{name:<28}{seq['duration_s']:>14}{par['duration_s']:>12}{par['rows_inserted']:>10}{par['rows_updated']:>9}")
speedup = sequential["wall_s"] / parallel["wall_s"]
print(f"{'wall time':<28}{sequential['wall_s']:>14}{parallel['wall_s']:>12}   speed-up {speedup:.2f}x")

# COMMAND ----------

dbutils.notebook.exit(json.dumps({"sales_rows": setup["sales_rows"], "sequential_s": sequential["wall_s"],
                                  "parallel_s": parallel["wall_s"], "speedup": round(speedup, 2)}))
