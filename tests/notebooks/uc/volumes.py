# Databricks notebook source
# Volumes and DBFS paths through Spark, SQL and dbutils.fs.
import json

out = {}
spark.sql("CREATE SCHEMA IF NOT EXISTS main.landing")
spark.sql("CREATE VOLUME IF NOT EXISTS main.landing.raw COMMENT 'files'")
spark.sql("CREATE VOLUME IF NOT EXISTS main.landing.raw")
ext = dbutils.fs.local_path("dbfs:/external/area")
spark.sql(f"CREATE EXTERNAL VOLUME main.landing.ext LOCATION 'dbfs:/external/area'")
out["volumes"] = [(r.database, r.volume_name) for r in spark.sql("SHOW VOLUMES IN main.landing").collect()]
detail = spark.sql("DESCRIBE VOLUME main.landing.ext").first()
out["ext"] = [detail.volume_type, detail.storage_location == str(ext)]

base = "/Volumes/main/landing/raw"
spark.createDataFrame([(1, "a"), (2, "b")], "id INT, name STRING").write.mode("overwrite").option("header", True).csv(f"{base}/csv")
out["csv"] = spark.read.option("header", True).csv(f"{base}/csv").count()
out["csv_sql"] = spark.sql(f"SELECT count(*) FROM csv.`{base}/csv`").first()[0]
out["csv_files"] = len([f for f in dbutils.fs.ls(f"{base}/csv") if f.name.endswith(".csv")])
# read_files (Databricks' own table function): options as the reader's, the schema inferred.
out["read_files"] = [tuple(r) for r in spark.sql(
    f"SELECT id, name FROM read_files('dbfs:{base}/csv', format => 'csv', header => true) ORDER BY id").collect()]
try:
    spark.sql("SELECT * FROM read_files('/Volumes/main/landing/raw/nothing.csv')").collect()
except Exception as exc:
    out["read_files_missing"] = str(exc).split("\n")[0]
dbutils.fs.put(f"{base}/notes/hello.txt", "hello", True)
out["fs"] = sorted(f.name for f in dbutils.fs.ls(base))
out["fs_path"] = dbutils.fs.ls(f"{base}/notes")[0].path
out["dbfs_volume"] = spark.read.text(f"dbfs:{base}/notes/hello.txt").first()[0]
spark.range(3).write.format("delta").mode("overwrite").save(f"{base}/delta")
spark.sql(f"CREATE TABLE main.landing.from_volume USING DELTA LOCATION '{base}/delta'")
out["located"] = spark.table("main.landing.from_volume").count()
try:
    spark.range(1).write.mode("overwrite").parquet("/Volumes/main/landing/never_created/x")
except Exception as exc:
    out["no_volume"] = str(exc).split("\n")[0]
try:
    dbutils.fs.put("/Volumes/main/landing/never_created/y.txt", "x")
except Exception as exc:
    out["no_volume_fs"] = str(exc).split("\n")[0]

# DBFS: dbfs:/, root-relative and /dbfs paths are one folder, for Spark and dbutils.fs alike.
spark.range(5).write.mode("overwrite").parquet("dbfs:/tmp/nums")
out["root_relative"] = spark.read.parquet("/tmp/nums").count()
out["fuse_view"] = spark.read.parquet("/dbfs/tmp/nums").count()
out["fs_sees_spark"] = any(f.name == "nums/" for f in dbutils.fs.ls("/tmp"))
spark.sql("CREATE TABLE main.default.in_dbfs (id INT) USING DELTA LOCATION 'dbfs:/tables/in_dbfs'")
spark.sql("INSERT INTO main.default.in_dbfs VALUES (7)")
out["dbfs_location"] = dbutils.fs.ls("dbfs:/tables/in_dbfs/_delta_log") != []
try:
    spark.read.json("/mnt/raw/missing.json")
except Exception as exc:
    out["missing"] = str(exc).split("\n")[0]
spark.sql("DROP VOLUME main.landing.ext")
out["after_drop"] = [r.volume_name for r in spark.sql("SHOW VOLUMES IN main.landing").collect()]
out["ext_kept"] = dbutils.fs.ls("dbfs:/external") != []
dbutils.notebook.exit(json.dumps(out))
