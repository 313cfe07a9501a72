# Databricks notebook source
# The kernel's parent is the plan worker that runs this task: kill it outright.
import os
import signal
import time

os.kill(os.getppid(), signal.SIGKILL)
time.sleep(30)
