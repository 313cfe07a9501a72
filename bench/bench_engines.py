"""The two cluster engines side by side, and plain papermill with a SparkSession per notebook, same run.

Five notebooks that do the sample workers' work (sample_notebooks/worker_*: read the ``sales`` and
``products`` Delta tables, aggregate, join, rank, filter, then MERGE the result into their own
Delta table), run three ways:

- ``papermill+SparkSession``: plain papermill, each notebook builds a classic local SparkSession
  (``local[*]``, a JVM each) with delta-spark's jars from nbflow's cache (``spark.jars``) and
  Delta's SQL extension and catalog: what a user without nbflow does;
- ``nbflow sail`` and ``nbflow spark``: ``nbflow run`` of each notebook, attached to the project's
  cluster on that engine (started ahead and timed on its own, see below).

The notebooks are the samples ported to what runs in all three: tables by path
(``delta.`file:///path```: ``file:`` is the local disk, as on Databricks, where a bare ``/path`` is
DBFS, which nbflow maps into the project), SQL MERGE instead of delta-spark's Python ``DeltaTable`` (plain pyspark has
no ``delta`` module without the delta-spark wheel), the target table made by an empty append (nbflow
on Sail cannot CREATE TABLE a ``delta.`path``` identifier), and no ``dbutils``.

Per engine, the cluster start is measured apart: ``nbflow cluster start --engine E`` (the whole
command) and then the first query from a new session (``spark.range(10).count()``), which on the
JVM still loads and compiles code. For ``spark`` the first start fetches Delta's jars into an
empty temporary ``NBFLOW_CACHE_DIR`` (cold cache; needs Maven Central or ``NBFLOW_MAVEN_REPO``),
then the cluster is stopped and started again from those jars (cached). ``--cache-dir`` uses an
existing cache instead and skips the cold start.

Sequential runs the five commands one after another; parallel starts all five at once. Peak
memory is the summed resident memory (RSS) of every process of the case, sampled every 0.1 s:
the cluster server (and Sail's gate), the ``nbflow run`` processes and their kernels; for
papermill its processes, kernels and their JVMs. ``--repeat N`` runs the whole set N times, the
cases in turn, and prints the median with the spread (min-max).

    .venv/bin/python bench/bench_engines.py [--rows N] [--repeat N] [--cache-dir DIR] [--skip-classic]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import nbformat
import psutil
from bench_workers import PeakMemory, in_case, run_all, sales_table

# name -> (query over the temp views `sales` and `products`, the MERGE key, the MERGE's WHEN MATCHED
# action); the same work as sample_notebooks/worker_1..5.
WORKERS = {
    "worker_1_region_daily": (
        "SELECT region, order_date, COUNT(*) AS orders, SUM(quantity * unit_price) AS revenue "
        "FROM sales GROUP BY region, order_date",
        "t.region = u.region AND t.order_date = u.order_date",
        "UPDATE SET *",
    ),
    "worker_2_customer_ltv": (
        "SELECT customer_id, COUNT(*) AS orders, SUM(quantity * unit_price) AS lifetime_value, "
        "MIN(order_date) AS first_order, MAX(order_date) AS last_order FROM sales GROUP BY customer_id",
        "t.customer_id = u.customer_id",
        "UPDATE SET *",
    ),
    "worker_3_product_rank": (
        "SELECT product_id, product_name, category, revenue, "
        "CAST(RANK() OVER (PARTITION BY category ORDER BY revenue DESC) AS INT) AS rank_in_category "
        "FROM (SELECT s.product_id, p.product_name, p.category, SUM(s.quantity * s.unit_price) AS revenue "
        "FROM sales s JOIN products p ON s.product_id = p.product_id "
        "GROUP BY s.product_id, p.product_name, p.category)",
        "t.product_id = u.product_id",
        "UPDATE SET *",
    ),
    "worker_4_category_monthly": (
        "SELECT p.category, date_format(s.order_date, 'yyyy-MM') AS month, "
        "SUM(s.quantity * s.unit_price) AS revenue, SUM(s.quantity) AS units "
        "FROM sales s JOIN products p ON s.product_id = p.product_id GROUP BY 1, 2",
        "t.category = u.category AND t.month = u.month",
        "UPDATE SET *",
    ),
    "worker_5_big_orders": (
        "SELECT order_id, customer_id, region, order_date, quantity * unit_price AS amount "
        "FROM sales WHERE quantity * unit_price >= 900",
        "t.order_id = u.order_id",
        "UPDATE SET t.amount = u.amount, t.region = u.region",
    ),
}

PARAMETERS = '''mode = "nbflow"  # classic | nbflow
jars = ""
data = ""
out = ""'''

SESSION = '''if mode == "classic":
    from pyspark.sql import SparkSession
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .getOrCreate()
    )
spark.read.format("delta").load(f"{data}/sales").createOrReplaceTempView("sales")
spark.read.format("delta").load(f"{data}/products").createOrReplaceTempView("products")'''

WORK = '''updates = spark.sql(QUERY)
updates.createOrReplaceTempView("updates")
# The target table, made if missing by appending no rows (nbflow on Sail has no CREATE TABLE for a
# delta.`path` identifier; the samples' CREATE TABLE IF NOT EXISTS names a catalog table instead).
updates.limit(0).write.format("delta").mode("append").save(out)
matched = spark.sql(f"SELECT COUNT(*) AS n FROM updates u JOIN delta.`{out}` t ON {KEY}").first()["n"]
total = updates.count()
spark.sql(f"MERGE INTO delta.`{out}` AS t USING updates AS u ON {KEY} "
          f"WHEN MATCHED THEN {ON_MATCH} WHEN NOT MATCHED THEN INSERT *")
rows = spark.read.format("delta").load(out).count()
assert rows == total, (rows, total)'''

ENGINES = ("sail", "spark")
CLASSIC = "papermill+SparkSession"


def make_inputs(folder: Path, rows: int) -> Path:
    """The sales and products Delta tables (the rows sample_notebooks/setup.py writes), and the notebooks."""
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    data = folder / "data"
    write_deltalake(str(data / "sales"), sales_table(rows))
    products = np.arange(200, dtype=np.int32)
    write_deltalake(str(data / "products"), pa.table({
        "product_id": products,
        "product_name": [f"product-{i}" for i in products],
        "category": np.array(["books", "games", "garden", "kitchen", "music"])[products % 5],
    }))
    for name, (query, key, on_match) in WORKERS.items():
        params = nbformat.v4.new_code_cell(PARAMETERS)
        params.metadata["tags"] = ["parameters"]
        constants = f"QUERY = {query!r}\nKEY = {key!r}\nON_MATCH = {on_match!r}"
        nb = nbformat.v4.new_notebook(cells=[
            params, nbformat.v4.new_code_cell(constants), nbformat.v4.new_code_cell(SESSION),
            nbformat.v4.new_code_cell(WORK),
        ])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    return data


def nbflow_cmd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "nbflow"), *args]


def first_query(project: Path) -> float:
    """Seconds for a new session's first small query on the project's running cluster."""
    import pyspark.sql.connect.session  # noqa: F401  (its import, a second, is not the cluster's time)

    from nbflow.cluster import attach, server

    state = server.status(project)
    assert state is not None, "the cluster should be running"
    began = time.perf_counter()
    session = attach.attach(state)
    session.range(10).count()
    seconds = time.perf_counter() - began
    session.stop()
    return seconds


def start_cluster(engine: str, project: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Start the project's cluster on ``engine``: (command seconds, first query seconds, idle MB)."""
    began = time.perf_counter()
    done = subprocess.run(nbflow_cmd("cluster", "start", "--engine", engine), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"nbflow cluster start --engine {engine} failed:\n{done.stderr[-2000:]}")
    status = json.loads(subprocess.run(nbflow_cmd("cluster", "status", "--json"), env=env, check=True,
                                       capture_output=True, text=True).stdout)
    if engine == "spark" and not status.get("delta"):
        raise SystemExit(f"the spark engine started without Delta ({status.get('reason')}): the bench needs "
                         "Delta's jars (Maven Central, NBFLOW_MAVEN_REPO, or --cache-dir with a filled cache)")
    query_s = first_query(project)
    return seconds, query_s, resident(in_case(env["NBFLOW_BENCH_CASE"])) / 2**20


def resident(select: Callable[[psutil.Process], bool]) -> int:
    """Summed RSS of the processes ``select`` picks, now."""
    total = 0
    for proc in psutil.process_iter():
        try:
            if select(proc):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def stop_cluster(env: dict[str, str]) -> None:
    subprocess.run(nbflow_cmd("cluster", "stop"), env=env, check=True, capture_output=True)


def workers(case: str, folder: Path, data: Path, jars: str, env: dict[str, str], rep: int,
            results: dict[tuple[str, str], list[float]]) -> None:
    """The five notebooks sequentially, then in parallel; wall seconds and peak MB into ``results``."""
    for mode in ("sequential", "parallel"):
        commands = []
        slug = case.replace(" ", "-")  # no space in a file:// URI
        for name in WORKERS:
            out = folder / "out" / f"{slug}-{rep}" / mode / name
            out.parent.mkdir(parents=True, exist_ok=True)
            nb = str(folder / f"{name}.ipynb")
            if case == CLASSIC:
                commands.append([str(Path(sys.executable).parent / "papermill"), nb, f"{out}.ipynb", "-k", "python3",
                                 "--no-progress-bar", "-p", "mode", "classic", "-p", "jars", jars,
                                 "-p", "data", f"file://{data}", "-p", "out", f"file://{out}"])
            else:
                engine = case.split()[-1]
                commands.append(nbflow_cmd("run", nb, "--engine", engine, "-p", f"data=file://{data}",
                                           "-p", f"out=file://{out}",
                                           "--output-dir", str(folder / "nbflow" / f"{slug}-{rep}" / mode)))
        with PeakMemory(in_case(case)) as memory:
            wall = run_all(commands, env, parallel=(mode == "parallel"))
        results[(case, f"{mode} s")].append(wall)
        results[(case, f"{mode} MB")].append(memory.peak / 2**20)
        print(f"  {case:<24}{mode:<12}{wall:8.2f} s  peak {memory.peak / 2**20:7.0f} MB", flush=True)


def cell(values: list[float], digits: int) -> str:
    """The median, with the spread when there are several values."""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="run the whole set N times; medians and spread")
    parser.add_argument("--cache-dir", type=Path, help="use this nbflow cache (Delta's jars) and skip the cold start")
    parser.add_argument("--skip-classic", action="store_true", help="leave out papermill with a SparkSession each")
    args = parser.parse_args()
    from nbflow.cluster import delta_jars

    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    cases = ([] if args.skip_classic else [CLASSIC]) + [f"nbflow {engine}" for engine in ENGINES]
    print(f"{len(WORKERS)} sample workers over {args.rows:,} sales rows; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_inputs(folder, args.rows)
        cache = args.cache_dir.resolve() if args.cache_dir else folder / "cache"
        base_env = {**os.environ, "NBFLOW_CACHE_DIR": str(cache)}
        projects = {case: folder / "project" / case.replace(" ", "-") for case in cases}
        try:
            for rep in range(args.repeat):
                print(f"repetition {rep + 1} of {args.repeat}", flush=True)
                for case in cases:
                    project = projects[case]
                    project.mkdir(parents=True, exist_ok=True)
                    env = {**base_env, "NBFLOW_BENCH_CASE": case, "NBFLOW_PROJECT_DIR": str(project)}
                    if case != CLASSIC:
                        engine = case.split()[-1]
                        label = "start"
                        if engine == "spark" and args.cache_dir is None:
                            # A fresh cache each repetition: the cold start fetches the jars again.
                            cache = folder / f"cache-{rep}"
                            env["NBFLOW_CACHE_DIR"] = base_env["NBFLOW_CACHE_DIR"] = str(cache)
                            start_s, query_s, _ = start_cluster(engine, project, env)
                            results[(case, "cold start s")].append(start_s)
                            print(f"  {case:<24}cold start  {start_s:8.2f} s  (jars fetched), first query "
                                  f"{query_s:.2f} s", flush=True)
                            stop_cluster(env)
                            label = "cached start"
                        start_s, query_s, idle_mb = start_cluster(engine, project, env)
                        results[(case, "start s")].append(start_s)
                        results[(case, "first query s")].append(query_s)
                        results[(case, "idle MB")].append(idle_mb)
                        print(f"  {case:<24}{label:<12}{start_s:8.2f} s, first query {query_s:.2f} s, "
                              f"idle {idle_mb:.0f} MB", flush=True)
                    try:
                        jars = ""
                        if case == CLASSIC:  # nbflow's cache is where this user takes delta-spark's jars from
                            installed = delta_jars.install(delta_jars.jar_dir(env), delta_jars.repository())
                            jars = ",".join(str(jar) for jar in installed.jars)
                        workers(case, folder, data, jars, env, rep, results)
                    finally:
                        if case != CLASSIC:
                            stop_cluster(env)
        finally:
            for case in cases:
                if case != CLASSIC:
                    stop_cluster({**base_env, "NBFLOW_PROJECT_DIR": str(projects[case])})
    print("raw: " + json.dumps({f"{case} | {what}": values for (case, what), values in results.items()}), flush=True)
    report(results, cases, args.repeat)
    return 0


def report(results: dict[tuple[str, str], list[float]], cases: list[str], repeat: int) -> None:
    """A Markdown table of medians (with the spread), then the ratios between the cases."""
    what = f"median (min-max) of {repeat} runs" if repeat > 1 else "one run"
    print(f"\n{what}; seconds, and MB of summed RSS of the case's processes\n")
    columns = ["start s", "first query s", "idle MB", "sequential s", "parallel s", "sequential MB", "parallel MB"]
    print("| case | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for case in cases:
        row = [cell(results[(case, c)], 0 if "MB" in c else 1) if results.get((case, c)) else "-" for c in columns]
        print(f"| {case} | " + " | ".join(row) + " |")
    if results.get(("nbflow spark", "cold start s")):
        print(f"\nnbflow spark's cold start (Delta's jars fetched into an empty cache): "
              f"{cell(results[('nbflow spark', 'cold start s')], 1)} s")
    print()
    med = {key: statistics.median(values) for key, values in results.items()}
    pairs = [("nbflow sail", CLASSIC), ("nbflow spark", CLASSIC), ("nbflow spark", "nbflow sail")]
    for mode in ("sequential", "parallel"):
        for ours, theirs in pairs:
            if theirs not in cases:
                continue
            a, b = med[(ours, f"{mode} s")], med[(theirs, f"{mode} s")]
            faster = f"{b / a:.1f}x faster" if a <= b else f"{a / b:.1f}x slower"
            memory = med[(ours, f"{mode} MB")] / med[(theirs, f"{mode} MB")]
            print(f"{mode:<11} {ours:<13} vs {theirs:<23} {a / b:5.2f}x wall time ({faster}), "
                  f"{memory:.2f}x peak memory")
    for ours in ("nbflow sail", "nbflow spark"):
        print(f"{ours} parallel speed-up over sequential: "
              f"{med[(ours, 'sequential s')] / med[(ours, 'parallel s')]:.2f}x")
    print(f"start: spark {med[('nbflow spark', 'start s')] / med[('nbflow sail', 'start s')]:.0f}x sail's; "
          f"idle memory: spark {med[('nbflow spark', 'idle MB')] / med[('nbflow sail', 'idle MB')]:.1f}x sail's")


if __name__ == "__main__":
    sys.exit(main())
