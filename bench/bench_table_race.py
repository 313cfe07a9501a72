"""Tables created by parallel tasks at once: the figure of the reliability issue's "split-brain" item.

Two plans run at the same time, each with three parallel tasks that all run
``CREATE TABLE IF NOT EXISTS`` + ``INSERT`` of 5,000 rows and ``saveAsTable(mode="append")`` of
5,000 rows into the same two tables (``tests/plans/table_race.yaml``). It prints the rows a new
session sees through the catalog (30,000 expected per table) and the Delta folders of each
table in the warehouse (1 expected: more are private copies nobody can see).

    .venv/bin/python bench/bench_table_race.py [--project DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "tests" / "plans"
TABLES = ("race_plan_sql", "race_plan_save")
COUNT = """
import sys
from nbflow.runtime.context import RunContext
from nbflow.runtime.session import Session

spark = Session(RunContext(project_dir=sys.argv[1], engine="sail")).lakehouse.spark()
for table in sys.argv[2:]:
    print(f"{table}: {spark.table(table).count()} of 30000 rows visible through the catalog")
spark.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="project folder to use (default: a new temporary one)")
    args = parser.parse_args()
    project = args.project or Path(tempfile.mkdtemp(prefix="nbflow-race-"))
    shutil.rmtree(project, ignore_errors=True)
    (project / "nb").mkdir(parents=True)
    shutil.copy(PLANS / "nb" / "table_race.py", project / "nb" / "table_race.py")
    for i in (1, 2):
        text = (PLANS / "table_race.yaml").read_text().replace("name: table_race", f"name: race{i}")
        (project / f"plan{i}.yaml").write_text(text)
    env = {**os.environ, "NBFLOW_PROJECT_DIR": str(project)}
    nbflow = [sys.executable, "-m", "nbflow"]
    subprocess.run([*nbflow, "cluster", "start", "--engine", "sail"], env=env, check=True, capture_output=True)
    try:
        started = time.monotonic()
        runs = [subprocess.Popen([*nbflow, "run", str(project / f"plan{i}.yaml"), "--mode", "parallel", "--json"],
                                 env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for i in (1, 2)]
        codes = [run.wait() for run in runs]
        print(f"two plans of 3 parallel tasks: exit codes {codes}, {time.monotonic() - started:.1f} s")
        subprocess.run([sys.executable, "-c", COUNT, str(project), *TABLES], env=env, check=False)
        for table in TABLES:
            copies = list((project / ".nbflow" / "warehouse").glob(f"{table}*/_delta_log"))
            print(f"{table}: {len(copies)} Delta folder(s) in the warehouse")
    finally:
        subprocess.run([*nbflow, "cluster", "stop"], env=env, capture_output=True, check=False)
        if args.project is None:
            shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
