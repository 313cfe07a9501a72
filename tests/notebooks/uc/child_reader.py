# Databricks notebook source
dbutils.widgets.text("table", "")
dbutils.notebook.exit(str(spark.table(dbutils.widgets.get("table")).count()))
