"""Plan runs: per-task overhead against papermill, parallel sleeps, and scheduler cost at scale.

The project's cluster is up (``nbflow cluster start``), as a user working on a project has it:
tasks run on the warm kernels of its pool service. ``--no-cluster`` measures the runs without
it (each run starts worker processes and kernels of its own).

1. Per task: N empty notebooks as a sequential plan (``nbflow run plan.yaml``) against N plain
   ``papermill`` commands one after another; time per notebook and the ratio (target: a third of
   papermill's time). Whole commands are timed, start-up included.
2. Five tasks that each sleep 2 s, in parallel, against the ideal 2 s (target: the whole command
   within 2.6 s): the first run, during which the pool grows to the plan's width, and the next.
3. Fan-out/fan-in plans of empty notebooks (start -> N tasks -> end) in parallel: wall time and
   time per task, for each size (target: at most 0.12 s per task, flat from 50 to 200).

    .venv/bin/python bench/bench_plans.py [--tasks N] [--sizes 50,100,200] [--no-cluster]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml


def notebook(folder: Path, name: str, code: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def plan(folder: Path, name: str, tasks: list[dict[str, object]]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "tasks": tasks}))
    return path


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--no-cluster", action="store_true", help="measure without the project's cluster")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    nbflow = str(bin_dir / "nbflow")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "NBFLOW_PROJECT_DIR": str(folder)}
        if not args.no_cluster:
            subprocess.run([nbflow, "cluster", "start"], check=True, env=env, stdout=subprocess.DEVNULL)
        try:
            measure(folder, env, bin_dir, args.tasks, [int(s) for s in args.sizes.split(",") if s])
        finally:
            if not args.no_cluster:
                subprocess.run([nbflow, "cluster", "stop"], env=env, stdout=subprocess.DEVNULL)
    return 0


def measure(folder: Path, env: dict[str, str], bin_dir: Path, n: int, sizes: list[int]) -> None:
    nbflow = str(bin_dir / "nbflow")
    empty = notebook(folder, "empty", "x = 1")
    notebook(folder, "sleep", "import time\ntime.sleep(2)")

    seq = plan(folder, "sequential", [{"task_key": f"t{i}", "notebook": "empty.ipynb"} for i in range(n)])
    started = time.perf_counter()
    out = subprocess.run([nbflow, "run", str(seq), "--json"], check=True, env=env, capture_output=True,
                         text=True).stdout
    ours = (time.perf_counter() - started) / n
    in_run = json.loads((Path(json.loads(out)["output_dir"]) / "run.json").read_text())["execution_duration"]
    started = time.perf_counter()
    for i in range(n):
        subprocess.run([str(bin_dir / "papermill"), str(empty), str(folder / f"pm{i}.ipynb"), "-k", "python3",
                        "--no-progress-bar"], check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    theirs = (time.perf_counter() - started) / n
    print(f"per task, {n} empty notebooks sequentially: nbflow plan {ours:.2f} s (whole command / {n}; "
          f"{in_run / 1000 / n:.2f} s in the run), papermill {theirs:.2f} s, ratio {ours / theirs:.2f}x "
          f"(target <= 0.33x)")

    sleeps = plan(folder, "sleeps", [{"task_key": f"s{i}", "notebook": "sleep.ipynb"} for i in range(5)])
    for label in ("first run", "next run"):
        started = time.perf_counter()
        out = subprocess.run([nbflow, "run", str(sleeps), "--mode", "parallel", "--json"], check=True, env=env,
                             capture_output=True, text=True).stdout
        wall = time.perf_counter() - started
        run = json.loads((Path(json.loads(out)["output_dir"]) / "run.json").read_text())
        execution, setup = run["execution_duration"] / 1000, run["setup_duration"] / 1000
        print(f"five 2-second sleeps in parallel, {label}: command {wall:.2f} s (target <= 2.6 s); "
              f"run execution {execution:.2f} s after {setup:.2f} s set-up")

    per_task: list[float] = []
    for size in sizes:
        tasks: list[dict[str, object]] = [{"task_key": "start", "notebook": "empty.ipynb"}]
        tasks += [{"task_key": f"m{i}", "notebook": "empty.ipynb", "depends_on": ["start"]} for i in range(size)]
        tasks.append({"task_key": "end", "notebook": "empty.ipynb", "depends_on": [f"m{i}" for i in range(size)]})
        fan = plan(folder, f"fan{size}", tasks)
        wall = timed([nbflow, "run", str(fan), "--mode", "parallel"], env)
        per_task.append(wall / (size + 2))
        print(f"fan-out/fan-in of {size} empty notebooks in parallel: {wall:.1f} s wall, "
              f"{per_task[-1]:.3f} s per task (target <= 0.12 s)")
    if len(per_task) > 1:
        print(f"per-task cost from {sizes[0]} to {sizes[-1]} tasks: {per_task[-1] / per_task[0]:.2f}x (flat: 1.0x)")

if __name__ == "__main__":
    sys.exit(main())
