-- Databricks notebook source
SET greeting = 'hello';
CREATE WIDGET TEXT who DEFAULT "world"

-- COMMAND ----------

SELECT ${greeting} || ', ' || :who AS text
