# Databricks notebook source
import json
from concurrent.futures import ThreadPoolExecutor

with ThreadPoolExecutor(max_workers=4) as pool:
    results = list(pool.map(lambda n: dbutils.notebook.run("./child", 120, {"x": str(n)}), range(4)))
dbutils.notebook.exit(json.dumps(results))
