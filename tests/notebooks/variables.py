# Databricks notebook source
import os
from collections import OrderedDict

count = 3
ratio = 0.5
name = "nbflow"
flags = [True, False]
config = {"a": 1, "b": [1, 2]}
nothing = None
_private = "hidden"
ordered = OrderedDict(a=1)


class Thing:
    def __repr__(self):
        return "Thing()"


thing = Thing()


def helper():
    return 1


my_dbutils = dbutils
dbutils_alias = dbutils.widgets
display = "a user variable that reuses a runtime name"

# COMMAND ----------

raise RuntimeError("variables are captured after a failure too")
