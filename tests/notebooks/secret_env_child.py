# Databricks notebook source
import os
value = dbutils.secrets.get("env_scope", "api_key")
visible = any(name.startswith("NBFLOW_SECRET") for name in os.environ)
dbutils.notebook.exit(f"child read {len(value)} chars, environ shows secrets: {visible}")
