# Databricks notebook source
# MAGIC %run ./constants

# COMMAND ----------

dbutils.widgets.text("greeting", "hello")
greeting = dbutils.widgets.get("greeting")


def shout(text):
    return f"{greeting} {text}{SUFFIX}".upper()
