# Databricks notebook source
# Fails until the file named by the job parameter `flag` exists.
import os

dbutils.widgets.text("flag", "")
assert os.path.exists(dbutils.widgets.get("flag")), "the flag file is missing"
