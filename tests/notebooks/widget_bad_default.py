# Databricks notebook source
dbutils.widgets.dropdown("env", "prod", ["dev", "test"])
