# Databricks notebook source
# Unity Catalog names on an engine with one catalog of its own (the JVM engine): resolved, not separate.
import json

spark.sql("CREATE CATALOG IF NOT EXISTS dev")
spark.sql("USE CATALOG dev")
spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
spark.range(4).write.saveAsTable("dev.silver.t")
spark.range(2).write.saveAsTable("main.default.u")
out = {
    "current": [spark.sql("SELECT current_catalog()").first()[0], spark.catalog.currentCatalog()],
    "catalogs": [r.catalog for r in spark.sql("SHOW CATALOGS").collect()],
    "rows": [spark.table("dev.silver.t").count(), spark.table("silver.t").count(), spark.table("main.default.u").count()],
}
dbutils.notebook.exit(json.dumps(out))
