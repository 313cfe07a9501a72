# Databricks notebook source
# MAGIC %md
# MAGIC # Worker 5: large orders (a filter set by a widget, DeltaTable merge)

# COMMAND ----------

dbutils.widgets.text("min_amount", "900", "Smallest order amount kept")
min_amount = float(dbutils.widgets.get("min_amount"))

# COMMAND ----------

import json

from delta.tables import DeltaTable
from pyspark.sql import functions as F

big = (
    spark.table("main.sales_demo.sales")
    .withColumn("amount", F.col("quantity") * F.col("unit_price"))
    .where(F.col("amount") >= min_amount)
    .select("order_id", "customer_id", "region", "order_date", "amount")
)
spark.sql("""
    CREATE TABLE IF NOT EXISTS main.sales_demo.output_table_5
    (order_id BIGINT, customer_id INT, region STRING, order_date DATE, amount DOUBLE) USING DELTA
""")
target = DeltaTable.forName(spark, "main.sales_demo.output_table_5")
matched = big.join(target.toDF().select("order_id"), "order_id").count()
total = big.count()
(
    target.alias("t")
    .merge(big.alias("s"), "t.order_id = s.order_id")
    .whenMatchedUpdate(set={"amount": "s.amount", "region": "s.region"})
    .whenNotMatchedInsertAll()
    .execute()
)
dbutils.notebook.exit(json.dumps({"table": "main.sales_demo.output_table_5", "rows_inserted": total - matched, "rows_updated": matched}))
