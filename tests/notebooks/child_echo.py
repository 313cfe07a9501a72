# Databricks notebook source
dbutils.widgets.text("token", "")
received = dbutils.widgets.get("token")
print("child got", received)
dbutils.notebook.exit("length " + str(len(received)))
