# Databricks notebook source
# MAGIC %run ./child_fails
