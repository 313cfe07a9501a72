# Databricks notebook source
# Unity Catalog names on an engine with one catalog of its own (the JVM engine): resolved, not separate.
import json

spark.sql("CREATE CATALOG IF NOT EXISTS dev")
spark.sql("USE CATALOG dev")
spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
spark.range(4).write.saveAsTable("dev.silver.t")
spark.range(2).write.saveAsTable("main.default.u")
# Another catalog's schema of the same name: one schema on the engine, two in Unity Catalog.
spark.sql("CREATE SCHEMA IF NOT EXISTS main.silver")
spark.range(1).write.saveAsTable("main.silver.other")
listed = {c: sorted(t.name for t in spark.catalog.listTables(f"{c}.silver")) for c in ("dev", "main")}
shown = {c: sorted(r.tableName for r in spark.sql(f"SHOW TABLES IN {c}.silver").collect()) for c in ("dev", "main")}
try:  # the same schema and table in two catalogs would be one engine table: refused, not overwritten
    spark.range(9).write.mode("overwrite").saveAsTable("main.silver.t")
except Exception as exc:
    same_name = str(exc).split("\n")[0]
out = {
    "listed": listed, "shown": shown, "same_name": same_name,
    "current": [spark.sql("SELECT current_catalog()").first()[0], spark.catalog.currentCatalog()],
    "catalogs": [r.catalog for r in spark.sql("SHOW CATALOGS").collect()],
    "rows": [spark.table("dev.silver.t").count(), spark.table("silver.t").count(), spark.table("main.default.u").count()],
}
dbutils.notebook.exit(json.dumps(out))
