"""Five small Spark notebooks, sequential and parallel: nbflow against plain papermill, same run.

Cases (each runs the same five notebooks over the same 1M-row Parquet input):

- ``papermill+SparkSession``: plain papermill; every notebook builds its own classic SparkSession
  (a JVM each), as many users do today;
- ``papermill+Sail``: plain papermill; every notebook attaches to one Sail Spark Connect server;
- ``nbflow``: ``nbflow run`` of each notebook; nbflow's kernel gives it ``spark`` on the
  project's local cluster (Sail), started by the first notebook.

Sequential runs the five commands one after another; parallel starts all five at once. Each case
prints wall time and peak memory (summed proportional set size, PSS, of every process of the case, sampled
every 0.1 s, cluster server included), and the ratios of nbflow against each papermill case.

    .venv/bin/python bench/bench_workers.py [--rows N] [--skip-classic]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import psutil

QUERIES = {
    "region_daily": "SELECT region, order_date, COUNT(*) AS orders, SUM(quantity * unit_price) AS revenue "
                    "FROM sales GROUP BY region, order_date",
    "customer_ltv": "SELECT customer_id, COUNT(*) AS orders, SUM(quantity * unit_price) AS ltv, "
                    "MIN(order_date) AS first_order FROM sales GROUP BY customer_id",
    "product_rank": "SELECT product_id, revenue, RANK() OVER (PARTITION BY product_id % 5 ORDER BY revenue DESC) "
                    "AS r FROM (SELECT product_id, SUM(quantity * unit_price) AS revenue FROM sales "
                    "GROUP BY product_id)",
    "monthly": "SELECT product_id % 5 AS category, date_format(order_date, 'yyyy-MM') AS month, "
               "SUM(quantity) AS units FROM sales GROUP BY 1, 2",
    "big_orders": "SELECT order_id, customer_id, quantity * unit_price AS amount FROM sales "
                  "WHERE quantity * unit_price >= 900",
}

PARAMETERS = '''mode = "nbflow"  # classic | connect | nbflow
url = ""
sales = ""
out = ""'''

BODY = '''if mode == "classic":
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
elif mode == "connect":
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.remote(url).getOrCreate()
spark.read.parquet(sales).createOrReplaceTempView("sales")
result = spark.sql(QUERY)
result.write.mode("overwrite").parquet(out)
rows = spark.read.parquet(out).count()'''


def sales_table(rows: int) -> Any:
    """The sales rows sample_notebooks/setup.py writes, as an Arrow table (also bench_engines')."""
    import numpy as np
    import pyarrow as pa

    ids = np.arange(rows, dtype=np.int64)
    return pa.table({
        "order_id": ids,
        "customer_id": (ids % 5000).astype(np.int32),
        "product_id": (ids % 200).astype(np.int32),
        "region": np.array(["north", "south", "east", "west"])[ids % 4],
        "quantity": ((ids * 7) % 10 + 1).astype(np.int32),
        "unit_price": ((ids * 13) % 1000) / 10.0 + 1,
        "order_date": pa.array(np.datetime64("2026-01-01") + (ids % 365).astype("timedelta64[D]"), pa.date32()),
    })


def make_inputs(folder: Path, rows: int) -> Path:
    import pyarrow.parquet as pq

    path = folder / "sales.parquet"
    pq.write_table(sales_table(rows), path)
    for name, query in QUERIES.items():
        params = nbformat.v4.new_code_cell(PARAMETERS)
        params.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(f"QUERY = {query!r}\n" + BODY)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    return path


class PeakMemory:
    """Peak of the summed memory of the processes ``select`` picks, sampled in a thread: their
    proportional set size (PSS: a page shared by n processes counts 1/n in each; forked kernels
    share most of theirs), resident size where PSS cannot be read."""

    def __init__(self, select: Callable[[psutil.Process], bool]) -> None:
        self.select = select
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for proc in psutil.process_iter(["pid"]):
                try:
                    if self.select(proc):
                        total += _memory(proc)
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _memory(proc: psutil.Process) -> int:
    try:
        return int(getattr(proc.memory_full_info(), "pss", proc.memory_info().rss))
    except psutil.AccessDenied:
        return int(proc.memory_info().rss)


def in_case(marker: str) -> Callable[[psutil.Process], bool]:
    """Processes of one case: those whose environment carries the case's marker."""
    def select(proc: psutil.Process) -> bool:
        return proc.environ().get("NBFLOW_BENCH_CASE") == marker
    return select


def run_all(commands: list[list[str]], env: dict[str, str], parallel: bool) -> float:
    started = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
        for proc, command in zip(procs, commands, strict=True):
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"failed: {' '.join(command)}\n{err.decode()[-2000:]}")
    else:
        for command in commands:
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 0:
                raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-classic", action="store_true", help="leave out the JVM-per-notebook case")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    results: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sales = make_inputs(folder, args.rows)
        # The project is the folder the inputs and outputs are in: a root-relative path outside
        # the project is a DBFS path, as on Databricks.
        project = folder
        cases = [] if args.skip_classic else ["papermill+SparkSession"]
        cases += ["papermill+Sail", "nbflow"]
        sail = None
        try:
            for case in cases:
                env = {**os.environ, "NBFLOW_BENCH_CASE": case, "NBFLOW_PROJECT_DIR": str(project)}
                url = ""
                if case == "papermill+Sail":
                    from nbflow.cluster import server as cluster

                    os.environ["NBFLOW_BENCH_CASE"] = case  # the server's memory counts for this case
                    # Plain pyspark attaches by sc:// URL: a plain TCP port, not nbflow's gated socket.
                    with socket.socket() as probe:
                        probe.bind(("127.0.0.1", 0))
                        free_port = probe.getsockname()[1]
                    sail = cluster.start(folder / "sail-project", cluster_engine="sail", port=free_port)
                    url = sail.url
                for mode in ("sequential", "parallel"):
                    commands = []
                    for name in QUERIES:
                        out = folder / "out" / case / mode / name
                        out.parent.mkdir(parents=True, exist_ok=True)
                        params = ["-p", "sales", str(sales), "-p", "out", str(out)]
                        nb = str(folder / f"{name}.ipynb")
                        if case == "nbflow":
                            commands.append([str(bin_dir / "nbflow"), "run", nb, "-p", f"sales={sales}",
                                             "-p", f"out={out}", "--output-dir", str(folder / "nbflow" / mode)])
                        else:
                            pm_mode = "classic" if case == "papermill+SparkSession" else "connect"
                            commands.append([str(bin_dir / "papermill"), nb, str(out) + ".ipynb", "-k", "python3",
                                             "--no-progress-bar", *params, "-p", "mode", pm_mode, "-p", "url", url])
                    with PeakMemory(in_case(case)) as memory:
                        wall = run_all(commands, env, parallel=(mode == "parallel"))
                    results[(case, mode)] = (wall, memory.peak / 2**20)
                    print(f"{case:<24}{mode:<12}{wall:8.2f} s  peak {memory.peak / 2**20:7.0f} MB", flush=True)
        finally:
            from nbflow.cluster import server as cluster

            cluster.stop(folder / "sail-project")
            cluster.stop(project)
    print()
    for mode in ("sequential", "parallel"):
        ours = results[("nbflow", mode)][0]
        for case in cases[:-1]:
            theirs = results[(case, mode)][0]
            print(f"{mode:<12} nbflow vs {case:<24} {ours / theirs:5.2f}x wall time ({theirs / ours:.1f}x faster)")
    seq, par = results[("nbflow", "sequential")][0], results[("nbflow", "parallel")][0]
    print(f"nbflow parallel speed-up over sequential: {seq / par:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
