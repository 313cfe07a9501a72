"""``dbutils.notebook.run`` of an empty child: the overhead of one call, from the parent's cell.

A parent notebook calls ``dbutils.notebook.run`` on an empty child N times in a row and times each
call; the child's own run time (its cells, from its executed notebook) is taken off, leaving what
the call costs: a kernel for the child, its start, its result. Measured with the project's cluster
up (the child runs on a warm kernel of its pool service; target: at most 0.15 s) and with the
pool service off (``NBFLOW_POOL=0``: each child starts a process and a kernel of its own).
Databricks takes about 3 s a call.

    .venv/bin/python bench/bench_notebook_run.py [--calls N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_S = 0.15
PARENT = """# Databricks notebook source
import json, time
calls = int(dbutils.widgets.get("calls"))
times = []
for i in range(calls):
    started = time.perf_counter()
    dbutils.notebook.run("./child", 60)
    times.append(time.perf_counter() - started)
dbutils.notebook.exit(json.dumps(times))
"""
CHILD = "# Databricks notebook source\nx = 1\n"


def measure(folder: Path, calls: int, env: dict[str, str]) -> tuple[float, float]:
    """The median call, and the median of the children's own run time."""
    out = subprocess.run([sys.executable, "-m", "nbflow", "run", str(folder / "parent.py"), "-p", f"calls={calls}",
                          "--json"], check=True, capture_output=True, text=True, env=env).stdout
    task = json.loads(out)["tasks"][0]
    times = json.loads(task["exit_value"])
    children = sorted((Path(task["output"]).with_name("parent.children")).glob("*.ipynb"))
    own = [json.loads(path.read_text())["metadata"]["nbflow"]["duration_s"] for path in children]
    return statistics.median(times[1:] or times), statistics.median(own)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    nbflow = str(Path(sys.executable).parent / "nbflow")
    for label in ("cluster up", "pool service off"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "parent.py").write_text(PARENT)
            (folder / "child.py").write_text(CHILD)
            env = {**os.environ, "NBFLOW_PROJECT_DIR": tmp, **({} if label == "cluster up" else {"NBFLOW_POOL": "0"})}
            if label == "cluster up":
                subprocess.run([nbflow, "cluster", "start"], check=True, env=env, stdout=subprocess.DEVNULL)
            try:
                call, own = measure(folder, args.calls, env)
            finally:
                subprocess.run([nbflow, "cluster", "stop"], env=env, stdout=subprocess.DEVNULL)
        overhead = call - own
        target = f" (target <= {TARGET_S} s)" if label == "cluster up" else ""
        print(f"dbutils.notebook.run of an empty child, {label}: {call:.3f} s a call (median of {args.calls}), "
              f"of which the child's own run {own:.3f} s: overhead {overhead:.3f} s{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
