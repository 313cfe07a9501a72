# Databricks notebook source
import json

dag = {
    "activities": [
        {"name": "first one", "path": "child", "args": {"x": "5"}},
        {"name": "second", "path": "./child.py", "args": {"x": "7"}, "dependencies": ["first one"]},
        {"name": "echo", "path": "child_echo", "args": {"token": "abc"}},
    ],
    "concurrency": 2,
}
assert notebookutils.notebook.validateDAG(dag)
results = notebookutils.notebook.runMultiple(dag)
out = {name: r["exitVal"] for name, r in results.items()}
from notebookutils import mssparkutils

try:
    mssparkutils.notebook.runMultiple({"activities": [{"name": "bad", "path": "child_fails"},
                                                      {"name": "fine", "path": "child"}]})
    out["failure"] = "no error"
except Exception as exc:
    out["failure"] = {name: (r["exitVal"], r["exception"] is not None) for name, r in exc.result.items()}
try:
    notebookutils.notebook.validateDAG({"activities": [{"name": "a", "path": "child", "dependencies": ["b"]},
                                                       {"name": "b", "path": "child", "dependencies": ["a"]}]})
except Exception as exc:
    out["cycle"] = str(exc)
out["run"] = notebookutils.notebook.run("child", 60, {"x": "1"})
notebookutils.notebook.exit(json.dumps(out))
