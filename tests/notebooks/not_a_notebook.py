print("a plain script, not a Databricks notebook")
