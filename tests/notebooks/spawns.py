# Databricks notebook source
# Starts one process in each way a notebook can leave something running, records their pids in
# the folder named by the widget "pids", then sleeps "seconds". Each process sleeps 300 s.
# With "kill_parent" set, it then kills the kernel's parent (a plan's worker) outright.
dbutils.widgets.text("pids", "")
dbutils.widgets.text("seconds", "0")
dbutils.widgets.text("kill_parent", "")

# COMMAND ----------

import os
import subprocess
import sys
import time
from pathlib import Path

folder = Path(dbutils.widgets.get("pids"))
folder.mkdir(parents=True, exist_ok=True)
os.environ["SPAWNS_PIDS"] = str(folder)  # for the %sh cell
SLEEP = "import time; time.sleep(300)"


def note(case, pid):
    (folder / f"{case}.pid").write_text(str(pid))


# A forked copy of the kernel.
pid = os.fork()
if pid == 0:
    time.sleep(300)
    os._exit(0)
note("fork", pid)
# Its own session: out of the kernel's process group.
note("new_session", subprocess.Popen([sys.executable, "-c", SLEEP, "new_session"], start_new_session=True).pid)
# Deaf to SIGTERM.
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
note("ignores_sigterm", subprocess.Popen([sys.executable, "-c", deaf, "ignores_sigterm"]).pid)
# Double fork: the middle process exits at once, the grandchild is orphaned.
middle = ("import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', %r, 'double_fork'], "
          "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)" % SLEEP)
note("double_fork", int(subprocess.run([sys.executable, "-c", middle], capture_output=True, text=True).stdout))
# A plain child.
note("plain", subprocess.Popen([sys.executable, "-c", SLEEP, "plain"]).pid)

# COMMAND ----------

# MAGIC %sh
# MAGIC nohup sleep 300 > /dev/null 2>&1 &
# MAGIC echo $! > "$SPAWNS_PIDS/sh_nohup.pid"

# COMMAND ----------

time.sleep(float(dbutils.widgets.get("seconds")))
if dbutils.widgets.get("kill_parent"):
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
dbutils.notebook.exit("spawned")
