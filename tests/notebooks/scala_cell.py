# Databricks notebook source
# MAGIC %scala
# MAGIC println("hi")
