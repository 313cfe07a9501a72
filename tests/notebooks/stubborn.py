# Databricks notebook source
import time

deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        time.sleep(0.2)
    except KeyboardInterrupt:
        pass
