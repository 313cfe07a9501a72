-- Databricks notebook source
DECLARE OR REPLACE VARIABLE schema_nm STRING DEFAULT 'clinical';
SELECT schema_nm
