# Databricks notebook source
# MAGIC %md
# MAGIC # Title

# COMMAND ----------

# MAGIC %sh
# MAGIC echo "from sh"

# COMMAND ----------

# MAGIC %python
# MAGIC via_python_magic = 1

# COMMAND ----------

# MAGIC %fs mkdirs /magic-test

# COMMAND ----------

# MAGIC %pip --version

# COMMAND ----------

listing = dbutils.fs.ls("/")
names = [f.name for f in listing]
dbutils.fs.rm("/magic-test", recurse=True)
dbutils.notebook.exit(",".join(names))
