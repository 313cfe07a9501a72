# Databricks notebook source
import json

dbutils.jobs.taskValues.set("rows", 42)
dbutils.jobs.taskValues.set("meta", {"source": "sales", "ok": True})
outcome = {"debug": dbutils.jobs.taskValues.get("upstream", "rows", default=1, debugValue=7)}
try:
    dbutils.jobs.taskValues.get("upstream", "rows")
except TypeError as exc:
    outcome["no_debug"] = str(exc)
try:
    dbutils.jobs.taskValues.set("big", "x" * (49 * 1024))
except ValueError as exc:
    outcome["too_big"] = str(exc)
try:
    dbutils.jobs.taskValues.set("obj", object())
except ValueError as exc:
    outcome["not_json"] = str(exc)
dbutils.notebook.exit(json.dumps(outcome))
