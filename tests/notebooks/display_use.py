# Databricks notebook source
display({"a": 1})
displayHTML("<b>bold</b>")
