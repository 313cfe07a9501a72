-- Databricks notebook source
CREATE WIDGET TEXT scratch DEFAULT "1";
CREATE WIDGET COMBOBOX b DEFAULT "x" CHOICES ('x', 'y');
CREATE WIDGET MULTISELECT c DEFAULT "p,q" CHOICES SELECT * FROM VALUES ('p'), ('q'), ('r');
REMOVE WIDGET scratch

-- COMMAND ----------

SET greeting = 'hello';
SELECT ${greeting} || ' ' || :b AS text

-- COMMAND ----------

-- MAGIC %python
-- MAGIC import json
-- MAGIC
-- MAGIC try:
-- MAGIC     dbutils.widgets.get("scratch")
-- MAGIC     gone = False
-- MAGIC except Exception as exc:
-- MAGIC     gone = "InputWidgetNotDefined" in str(exc)
-- MAGIC dbutils.notebook.exit(json.dumps({"gone": gone, "b": dbutils.widgets.get("b"),
-- MAGIC                                   "c": dbutils.widgets.get("c"), "text": _sqldf.first()["text"]}))
