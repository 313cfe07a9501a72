# Databricks notebook source
dbutils.notebook.exit("x" * (6 * 1024 * 1024))
