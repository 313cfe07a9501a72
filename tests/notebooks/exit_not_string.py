# Databricks notebook source
dbutils.notebook.exit(42)
