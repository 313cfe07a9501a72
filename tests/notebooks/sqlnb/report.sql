-- Databricks notebook source
-- MAGIC %md-sandbox
-- MAGIC
-- MAGIC # Totals by region
-- MAGIC A SQL notebook: widgets declared in SQL and read as `:name`, `${name}` and `getArgument`.

-- COMMAND ----------

CREATE WIDGET TEXT region DEFAULT "north";
CREATE WIDGET DROPDOWN unit DEFAULT "kg" CHOICES SELECT * FROM (VALUES ("kg"), ("lb"));
CREATE WIDGET TEXT label DEFAULT 'it\'s; fine'

-- COMMAND ----------

-- DBTITLE 1,Totals
-- :region is bound as a value, never pasted into the text; ${unit} is pasted (legacy syntax)
SELECT region, sum(amount) AS total, '${unit}' AS unit, getArgument("label") AS label
FROM VALUES ('north', 10), ('south', 20), ('north', 5), ('x\'; DROP', 1) AS t(region, amount)
WHERE region = :region /* a ; in a comment */
GROUP BY region

-- COMMAND ----------

-- MAGIC %python
-- MAGIC import json
-- MAGIC
-- MAGIC rows = [row.asDict() for row in _sqldf.collect()]
-- MAGIC dbutils.notebook.exit(json.dumps(rows))
