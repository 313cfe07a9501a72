# Databricks notebook source
import json

dbutils.widgets.text("from_ref", "")
got = dbutils.jobs.taskValues.get("producer", "rows")
dbutils.notebook.exit(json.dumps({"ref": dbutils.widgets.get("from_ref"), "get": got, "env": dbutils.widgets.get("env")}))
