# Databricks notebook source
dbutils.widgets.text("table", "shared_t")
dbutils.notebook.exit(str(spark.table(dbutils.widgets.get("table")).count()))
