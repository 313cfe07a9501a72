# Databricks notebook source
ok = 1

# COMMAND ----------

raise KeyError("child broke")
