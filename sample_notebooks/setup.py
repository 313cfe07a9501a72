# Databricks notebook source
# MAGIC %md
# MAGIC # Setup: the sales input table
# MAGIC Creates `main.sales_demo.sales` (deterministic generated rows; `rows` sets how many) and
# MAGIC the small dimension table `main.sales_demo.products`, both Delta tables in Unity Catalog.

# COMMAND ----------

dbutils.widgets.text("rows", "1000000", "Number of sales rows")
rows = int(dbutils.widgets.get("rows"))
spark.sql("CREATE SCHEMA IF NOT EXISTS main.sales_demo COMMENT 'the sample pipeline'")

# COMMAND ----------

# DBTITLE 1,Generate the sales rows (the same rows every time)
sales = spark.range(rows).selectExpr(
    "id AS order_id",
    "CAST(id % 5000 AS INT) AS customer_id",
    "CAST(id % 200 AS INT) AS product_id",
    "element_at(array('north', 'south', 'east', 'west'), CAST(id % 4 AS INT) + 1) AS region",
    "CAST((id * 7) % 10 + 1 AS INT) AS quantity",
    "CAST(((id * 13) % 1000) / 10.0 + 1 AS DOUBLE) AS unit_price",
    "date_add(DATE'2026-01-01', CAST(id % 365 AS INT)) AS order_date",
)
sales.write.format("delta").mode("overwrite").saveAsTable("main.sales_demo.sales")

# COMMAND ----------

products = spark.range(200).selectExpr(
    "CAST(id AS INT) AS product_id",
    "concat('product-', id) AS product_name",
    "element_at(array('books', 'games', 'garden', 'kitchen', 'music'), CAST(id % 5 AS INT) + 1) AS category",
)
products.write.format("delta").mode("overwrite").saveAsTable("main.sales_demo.products")

# COMMAND ----------

import json

dbutils.notebook.exit(json.dumps({"sales_rows": spark.table("main.sales_demo.sales").count(), "products": spark.table("main.sales_demo.products").count()}))
