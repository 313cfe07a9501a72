# Databricks notebook source
# A task in a kernel started ahead of time still runs in its own folder, with Spark attached early.
import os
import sys

from nbflow.runtime import lakehouse

here = os.getcwd()
preattached = lakehouse._preattached is not None
from helpers.local_module import VALUE  # beside the notebook

# COMMAND ----------
rows = spark.range(3).count()
dbutils.notebook.exit(f"{here}|{preattached}|{VALUE}|{rows}")
