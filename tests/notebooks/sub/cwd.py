# Databricks notebook source
import os

dbutils.notebook.exit(os.getcwd())
