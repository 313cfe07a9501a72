# Databricks notebook source
import json
import time

started = time.monotonic()
try:
    dbutils.notebook.run("./sleeps", 2, {"seconds": "60"})
    outcome = {"raised": False}
except Exception as exc:
    outcome = {"raised": True, "type": type(exc).__name__, "message": str(exc), "status": exc.status}
outcome["elapsed"] = time.monotonic() - started
dbutils.notebook.exit(json.dumps(outcome))
