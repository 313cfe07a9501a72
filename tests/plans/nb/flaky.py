# Databricks notebook source
dbutils.widgets.text("succeed_on", "2")
import os

marker = dbutils.fs.local_path("dbfs:/flaky-count")
os.makedirs(os.path.dirname(marker), exist_ok=True)
count = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
open(marker, "w").write(str(count))
if count < int(dbutils.widgets.get("succeed_on")):
    raise RuntimeError(f"attempt {count} fails")
dbutils.notebook.exit(f"succeeded on attempt {count}")
