# Databricks notebook source
# Catalogs, schemas and three-level names, as a Unity Catalog notebook writes them.
import json

out = {}
out["start"] = [spark.sql("SELECT current_catalog()").first()[0], spark.catalog.currentCatalog(),
                spark.catalog.currentDatabase()]
spark.sql("CREATE CATALOG IF NOT EXISTS sales_dev COMMENT 'a dev catalog'")
spark.sql("CREATE CATALOG IF NOT EXISTS sales_dev")  # no error the second time
try:
    spark.sql("CREATE CATALOG sales_dev")
except Exception as exc:
    out["again"] = type(exc).__name__ + ": " + str(exc).split("\n")[0]
out["catalogs"] = [r.catalog for r in spark.sql("SHOW CATALOGS").collect()]
out["like"] = [r.catalog for r in spark.sql("SHOW CATALOGS LIKE 'sales*|main'").collect()]
out["list_catalogs"] = sorted(c.name for c in spark.catalog.listCatalogs())

# COMMAND ----------

# MAGIC %sql
# MAGIC USE CATALOG sales_dev;
# MAGIC CREATE SCHEMA IF NOT EXISTS bronze COMMENT 'raw';
# MAGIC CREATE TABLE bronze.orders (id BIGINT, amount DOUBLE);
# MAGIC INSERT INTO sales_dev.bronze.orders VALUES (1, 10.0), (2, 20.0), (3, 30.0);
# MAGIC MERGE INTO sales_dev.bronze.orders AS t USING (SELECT 2L AS id, 99.0 AS amount UNION ALL SELECT 4L, 40.0) AS s
# MAGIC   ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount WHEN NOT MATCHED THEN INSERT *;
# MAGIC UPDATE sales_dev.bronze.orders SET amount = 0 WHERE id = 1;
# MAGIC DELETE FROM sales_dev.bronze.orders WHERE id = 3

# COMMAND ----------

out["current"] = [spark.sql("SELECT current_catalog()").first()[0], spark.catalog.currentCatalog()]
out["orders"] = sorted((r.id, r.amount) for r in spark.table("sales_dev.bronze.orders").collect())
out["two_level"] = spark.table("bronze.orders").count()  # resolves against the current catalog
spark.sql("CREATE OR REPLACE TABLE sales_dev.bronze.big AS SELECT * FROM sales_dev.bronze.orders WHERE amount > 10")
spark.sql("CREATE OR REPLACE TABLE sales_dev.bronze.big AS SELECT * FROM sales_dev.bronze.orders WHERE amount > 20")
out["ctas"] = spark.read.table("sales_dev.bronze.big").count()
out["columns"] = spark.table("sales_dev.bronze.big").columns
spark.range(4).write.saveAsTable("main.default.numbers")
spark.range(2).write.mode("append").saveAsTable("main.default.numbers")
out["numbers"] = spark.sql("SELECT count(*) FROM main.default.numbers").first()[0]
spark.range(5).writeTo("sales_dev.bronze.v2").createOrReplace()
out["v2"] = spark.table("sales_dev.bronze.v2").count()
out["exists"] = [spark.catalog.tableExists("sales_dev.bronze.orders"), spark.catalog.tableExists("main.default.numbers"),
                 spark.catalog.tableExists("sales_dev.bronze.nope"), spark.catalog.tableExists("orders", "bronze")]
out["list_tables"] = sorted((t.catalog, t.name) for t in spark.catalog.listTables("sales_dev.bronze"))
out["list_databases"] = sorted(d.name for d in spark.catalog.listDatabases())
out["db_exists"] = [spark.catalog.databaseExists("bronze"), spark.catalog.databaseExists("main.nope")]
spark.sql("USE main.default")
out["after_use"] = [spark.catalog.currentCatalog(), spark.catalog.currentDatabase(), spark.table("numbers").count()]
spark.catalog.setCurrentCatalog("sales_dev")
spark.sql("USE SCHEMA bronze")
out["set_current"] = [spark.catalog.currentCatalog(), spark.catalog.currentDatabase(), spark.table("orders").count()]
out["schemas"] = [r.databaseName for r in spark.sql("SHOW SCHEMAS IN sales_dev").collect()]
out["tables"] = sorted(r.tableName for r in spark.sql("SHOW TABLES IN sales_dev.bronze").collect())
from delta.tables import DeltaTable

out["delta_for_name"] = [DeltaTable.forName(spark, "sales_dev.bronze.orders").toDF().count(),
                         DeltaTable.forName(spark, "orders").toDF().count()]  # the current catalog and schema
out["history"] = spark.sql("DESCRIBE HISTORY sales_dev.bronze.orders").count()
spark.sql("GRANT USE CATALOG ON CATALOG sales_dev TO `account users`")
spark.sql("DROP TABLE sales_dev.bronze.big")
out["dropped"] = spark.catalog.tableExists("sales_dev.bronze.big")
try:
    spark.sql("USE CATALOG nowhere")
except Exception as exc:
    out["no_catalog"] = type(exc).__name__ + ": " + str(exc).split("\n")[0]
try:
    spark.sql("DROP SCHEMA sales_dev.bronze")
except Exception as exc:
    out["not_empty"] = str(exc).split("\n")[0][:60]
try:
    spark.sql("CREATE SCHEMA system.mine")
except Exception as exc:
    out["read_only"] = str(exc).split("\n")[0]
spark.sql("CREATE SCHEMA sales_dev.scratch")
spark.range(1).write.saveAsTable("sales_dev.scratch.tmp")
spark.sql("DROP SCHEMA sales_dev.scratch CASCADE")
out["scratch_gone"] = [spark.catalog.databaseExists("sales_dev.scratch"), spark.catalog.tableExists("sales_dev.scratch.tmp")]
spark.sql("CREATE TABLE hive_metastore.default.legacy AS SELECT 1 AS x")
out["legacy"] = spark.table("spark_catalog.default.legacy").count()
dbutils.notebook.exit(json.dumps(out))
