# Databricks notebook source
dbutils.notebook.exit("a:" + dbutils.notebook.run("./sub/nested_b", 120, {"x": "4"}))
