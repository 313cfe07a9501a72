# Databricks notebook source
dbutils.widgets.text("start", "0")
start = int(dbutils.widgets.get("start"))
spark.sql("CREATE TABLE IF NOT EXISTS merged (id BIGINT, src STRING) USING DELTA")
src = spark.range(start, start + 1000).selectExpr("id", f"'{start}' AS src")
src.createOrReplaceTempView("src")
spark.sql("MERGE INTO merged t USING src s ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
dbutils.notebook.exit("ok")
