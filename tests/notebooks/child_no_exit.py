# Databricks notebook source
value = 1
