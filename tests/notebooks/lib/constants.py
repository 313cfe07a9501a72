# Databricks notebook source
SUFFIX = "!"
