# Databricks notebook source
dbutils.notebook.run("./sleeps", 0, {"seconds": "120"})
