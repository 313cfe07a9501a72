# Databricks notebook source
import json

dbutils.fs.mkdirs("dbfs:/tmp/nbflow-test/in")
dbutils.fs.put("/tmp/nbflow-test/in/a.txt", "héllo", overwrite=True)
outcome = {"head": dbutils.fs.head("dbfs:/tmp/nbflow-test/in/a.txt")}
try:
    dbutils.fs.put("dbfs:/tmp/nbflow-test/in/a.txt", "again")
except Exception as exc:
    outcome["exists"] = str(exc)
dbutils.fs.cp("dbfs:/tmp/nbflow-test/in/a.txt", "dbfs:/tmp/nbflow-test/copy.txt")
dbutils.fs.mv("dbfs:/tmp/nbflow-test/copy.txt", "dbfs:/tmp/nbflow-test/moved.txt")
dbutils.fs.cp("dbfs:/tmp/nbflow-test/in", "dbfs:/tmp/nbflow-test/in2", recurse=True)
listing = dbutils.fs.ls("dbfs:/tmp/nbflow-test")
outcome["ls"] = [(f.name, f.size, f.isDir()) for f in listing]
outcome["paths"] = [f.path for f in listing]
try:
    dbutils.fs.rm("dbfs:/tmp/nbflow-test/in2")
except Exception as exc:
    outcome["rm_dir"] = str(exc)
outcome["rm"] = dbutils.fs.rm("dbfs:/tmp/nbflow-test", recurse=True)
outcome["rm_missing"] = dbutils.fs.rm("dbfs:/tmp/nbflow-test")
try:
    dbutils.fs.ls("dbfs:/tmp/nbflow-test")
except Exception as exc:
    outcome["missing"] = str(exc)
dbutils.notebook.exit(json.dumps(outcome))
