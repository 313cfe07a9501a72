# Databricks notebook source
# MAGIC %md
# MAGIC # A concurrent notebook workflow
# MAGIC Runs `hello` once per name, sequentially and then in parallel with a thread pool
# MAGIC (the pattern from Databricks' "Run notebooks concurrently" example), and compares the times.

# COMMAND ----------

dbutils.widgets.text("names", "ada,grace,linus,guido")
names = [n.strip() for n in dbutils.widgets.get("names").split(",") if n.strip()]

# COMMAND ----------

import json
import time
from concurrent.futures import ThreadPoolExecutor


def greet(name):
    return json.loads(dbutils.notebook.run("./hello", 120, {"name": name}))["greeting"]


started = time.monotonic()
sequential = [greet(name) for name in names]
sequential_s = round(time.monotonic() - started, 2)

started = time.monotonic()
with ThreadPoolExecutor(max_workers=4) as pool:
    parallel = list(pool.map(greet, names))
parallel_s = round(time.monotonic() - started, 2)

print(f"sequential: {sequential_s} s, parallel: {parallel_s} s")

# COMMAND ----------

dbutils.notebook.exit(json.dumps({"greetings": parallel, "sequential_s": sequential_s, "parallel_s": parallel_s}))
