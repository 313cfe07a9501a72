# Databricks notebook source
# Run with NBFLOW_DEFAULT_CATALOG set: unqualified names resolve against that catalog.
dbutils.notebook.exit(f"{spark.catalog.currentCatalog()}:{spark.table('legacy_t').count()}")
