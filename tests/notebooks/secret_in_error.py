# Databricks notebook source
raise ValueError("bad credentials: " + dbutils.secrets.get("app", "token"))
