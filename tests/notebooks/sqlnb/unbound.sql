-- Databricks notebook source
SELECT :nobody AS x
