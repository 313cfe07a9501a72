# Databricks notebook source
import json, os, subprocess
seen_in_environ = [name for name in os.environ if name.startswith("NBFLOW_SECRET")]
shell_env = subprocess.run(["env"], capture_output=True, text=True).stdout
with open("/proc/self/environ", "rb") as f:  # the environment the kernel was started with
    in_proc = b"NBFLOW_SECRET" in f.read()
key = dbutils.secrets.get("env_scope", "api_key")

# COMMAND ----------

# MAGIC %sh env | grep -c NBFLOW_SECRET || true

# COMMAND ----------

dbutils.jobs.taskValues.set("leaked", {"key": key})
child = dbutils.notebook.run("./secret_env_child", 60)
dbutils.notebook.exit(json.dumps({
    "environ": seen_in_environ,
    "in_shell": "NBFLOW_SECRET" in shell_env,
    "in_proc": in_proc,
    "read": key[::-1] == "eulav-terces-vne",
    "child": child,
}))
