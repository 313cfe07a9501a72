# Databricks notebook source
# Permission statements are no-ops (one warning line per kind); statements the engine cannot
# parse fail in one line; the last cell fails on one, uncaught.
import json

from pyspark.errors import AnalysisException, ParseException

spark.sql("CREATE TABLE granted AS SELECT 1 AS id")
results = {}
for statement in ["GRANT SELECT ON TABLE granted TO `analysts`",
                  "GRANT USE SCHEMA, SELECT ON SCHEMA default TO `data-team@example.com`",
                  "REVOKE SELECT ON TABLE granted FROM analysts",
                  "DENY SELECT ON TABLE granted TO interns",
                  "ALTER TABLE granted OWNER TO `admins`",
                  "ALTER SCHEMA default OWNER TO admins",
                  "ALTER TABLE granted SET OWNER TO admins"]:
    results[statement.split()[0]] = spark.sql(statement).collect()
grants = spark.sql("SHOW GRANTS ON TABLE granted")
spark.sql("SHOW GRANTS `someone@example.com` ON SCHEMA default")

# COMMAND ----------

# MAGIC %sql
# MAGIC GRANT MODIFY ON TABLE granted TO writers

# COMMAND ----------

errors = {}
for statement in ["DESCRIBE HISTORIES granted", "OPTIMIZE granted FULL", "SELEC 1",
                  "-- a comment first\nCREATE TABLE x (id INT) USING delta WITH (wat)"]:
    try:
        spark.sql(statement)
    except Exception as exc:  # the JVM engine parses some of these, then fails otherwise
        errors[statement] = {"message": str(exc) if isinstance(exc, ParseException) else str(exc).splitlines()[0],
                             "parse": isinstance(exc, ParseException), "class": exc.getCondition(),
                             "analysis": isinstance(exc, AnalysisException)}
out_json = json.dumps({"results": results, "grants": [grants.columns, grants.count()], "errors": errors,
                       "granted_rows": spark.table("granted").count()})

# COMMAND ----------

spark.sql("VACUUM granted RETAIN FOREVER")
