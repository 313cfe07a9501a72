# Databricks notebook source
token = dbutils.secrets.get("app", "token")
dbutils.notebook.exit(dbutils.notebook.run("./child_echo", 60, {"token": token}))
