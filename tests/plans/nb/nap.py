# Databricks notebook source
dbutils.widgets.text("seconds", "60")
import time

time.sleep(float(dbutils.widgets.get("seconds")))
dbutils.notebook.exit("rested")
