# Databricks notebook source
dbutils.widgets.text("x", "0")
inner = dbutils.notebook.run("../child", 60, {"x": dbutils.widgets.get("x")})
dbutils.notebook.exit("b:" + inner)
