# Databricks notebook source
# MAGIC %md
# MAGIC # Worker 1: revenue per region and day (aggregation, SQL MERGE upsert)

# COMMAND ----------

import json

daily = spark.sql("""
    SELECT region, order_date, COUNT(*) AS orders, SUM(quantity * unit_price) AS revenue
    FROM main.sales_demo.sales GROUP BY region, order_date
""")
daily.createOrReplaceTempView("daily_updates")
spark.sql("""
    CREATE TABLE IF NOT EXISTS main.sales_demo.output_table_1
    (region STRING, order_date DATE, orders BIGINT, revenue DOUBLE) USING DELTA
""")

# COMMAND ----------

matched = spark.sql(
    "SELECT COUNT(*) AS n FROM daily_updates u JOIN main.sales_demo.output_table_1 t "
    "ON t.region = u.region AND t.order_date = u.order_date"
).first()["n"]
total = daily.count()
spark.sql("""
    MERGE INTO main.sales_demo.output_table_1 AS t USING daily_updates AS u
    ON t.region = u.region AND t.order_date = u.order_date
    WHEN MATCHED THEN UPDATE SET *
    WHEN NOT MATCHED THEN INSERT *
""")
dbutils.notebook.exit(json.dumps({"table": "main.sales_demo.output_table_1", "rows_inserted": total - matched, "rows_updated": matched}))
