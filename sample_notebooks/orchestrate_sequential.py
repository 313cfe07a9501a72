# Databricks notebook source
# MAGIC %md
# MAGIC # Run the five workers one after another (`dbutils.notebook.run`)

# COMMAND ----------

import json
import time

WORKERS = ["worker_1_region_daily", "worker_2_customer_ltv", "worker_3_product_rank",
           "worker_4_category_monthly", "worker_5_big_orders"]

started = time.monotonic()
results = {}
for name in WORKERS:
    t0 = time.monotonic()
    summary = json.loads(dbutils.notebook.run(f"./{name}", 3600))
    results[name] = {**summary, "duration_s": round(time.monotonic() - t0, 2)}
wall_s = round(time.monotonic() - started, 2)

# COMMAND ----------

dbutils.notebook.exit(json.dumps({"mode": "sequential", "wall_s": wall_s, "workers": results}))
