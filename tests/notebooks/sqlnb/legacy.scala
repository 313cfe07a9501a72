// Databricks notebook source
println("hi")
