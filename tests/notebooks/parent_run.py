# Databricks notebook source
import json

parent_only = "parent"
doubled = dbutils.notebook.run("./child", 60, {"x": "21"})
with_ext = dbutils.notebook.run("child.py", 60, {"x": 5})
no_exit = dbutils.notebook.run("./child_no_exit", 0)
leak = "secret_of_child" in globals()
dbutils.notebook.exit(json.dumps({"doubled": doubled, "with_ext": with_ext, "no_exit": no_exit, "leak": leak}))
