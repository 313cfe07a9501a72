# Databricks notebook source
dbutils.widgets.text("n", "1")
dbutils.jobs.taskValues.set("rows", int(dbutils.widgets.get("n")) * 10)
dbutils.notebook.exit("set")
