# Databricks notebook source
# MAGIC %md
# MAGIC # Run the five workers at once (the concurrent notebook workflow pattern)

# COMMAND ----------

dbutils.widgets.text("max_workers", "5", "Notebooks running at once")
max_workers = int(dbutils.widgets.get("max_workers"))

# COMMAND ----------

import json
import time
from concurrent.futures import ThreadPoolExecutor

WORKERS = ["worker_1_region_daily", "worker_2_customer_ltv", "worker_3_product_rank",
           "worker_4_category_monthly", "worker_5_big_orders"]


def run_worker(name):
    t0 = time.monotonic()
    summary = json.loads(dbutils.notebook.run(f"./{name}", 3600))
    return name, {**summary, "duration_s": round(time.monotonic() - t0, 2)}


started = time.monotonic()
with ThreadPoolExecutor(max_workers=max_workers) as pool:
    results = dict(pool.map(run_worker, WORKERS))
wall_s = round(time.monotonic() - started, 2)

# COMMAND ----------

dbutils.notebook.exit(json.dumps({"mode": "parallel", "wall_s": wall_s, "workers": results}))
