# Databricks notebook source
dbutils.widgets.text("city", "Paris", "City")
dbutils.widgets.dropdown("size", "M", ["S", "M", "L"])
dbutils.widgets.combobox("color", "red", ["red", "blue"])
dbutils.widgets.multiselect("days", "mon", ["mon", "tue", "wed"])

# COMMAND ----------

import json

values = {name: dbutils.widgets.get(name) for name in ["city", "size", "color", "days"]}
values["all"] = dict(dbutils.widgets.getAll())
values["getArgument"] = getArgument("city")
values["getArgument_default"] = dbutils.widgets.getArgument("nope", "fallback")
dbutils.widgets.remove("color")
try:
    dbutils.widgets.get("color")
    values["removed"] = "still there"
except Exception as exc:
    values["removed"] = str(exc)
dbutils.widgets.removeAll()
values["after_remove_all"] = sorted(dbutils.widgets.getAll())
dbutils.notebook.exit(json.dumps(values))
