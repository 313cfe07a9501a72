# Databricks notebook source
import json

token = dbutils.secrets.get("app", "token")
print("the token is", token)
token

# COMMAND ----------

outcome = {
    "length": len(token),
    "bytes": dbutils.secrets.getBytes("app", "token") == token.encode(),
    "keys": [m.key for m in dbutils.secrets.list("app")],
    "scopes": [s.name for s in dbutils.secrets.listScopes()],
    "env": dbutils.secrets.get("env-scope", "api-key") == "from-env",
}
try:
    dbutils.secrets.get("app", "missing")
except Exception as exc:
    outcome["missing"] = str(exc)
dbutils.notebook.exit(json.dumps(outcome))
