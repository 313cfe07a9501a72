# Databricks notebook source
dbutils.widgets.text("writer", "0")
writer = int(dbutils.widgets.get("writer"))
spark.sql("SELECT 1").collect()

# COMMAND ----------

spark.sql("CREATE TABLE IF NOT EXISTS race_plan_sql (writer INT, id BIGINT)")
spark.sql(f"INSERT INTO race_plan_sql SELECT {writer}, id FROM range(5000)")
spark.range(5000).selectExpr(f"{writer} AS writer", "id").write.mode("append").saveAsTable("race_plan_save")
