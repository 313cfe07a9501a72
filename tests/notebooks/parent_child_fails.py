# Databricks notebook source
import json

from nbflow.errors import WorkflowException

try:
    dbutils.notebook.run("./child_fails", 60)
    outcome = {"raised": False}
except WorkflowException as exc:
    outcome = {
        "raised": True,
        "message": str(exc),
        "status": exc.status,
        "error": exc.error,
        "output_exists": __import__("os").path.exists(exc.output_path),
    }
try:
    dbutils.notebook.run("./no_such_notebook", 60)
except Exception as exc:
    outcome["missing"] = f"{type(exc).__name__}: {exc}"
dbutils.notebook.exit(json.dumps(outcome))
