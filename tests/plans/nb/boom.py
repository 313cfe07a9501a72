# Databricks notebook source
raise ValueError("boom")
