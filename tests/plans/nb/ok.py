# Databricks notebook source
dbutils.notebook.exit("ok")
