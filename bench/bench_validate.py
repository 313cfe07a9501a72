"""Validating large plans: ``nbflow validate`` on long chains and wide fan-outs.

Shapes, each at every size (target: a 10,000-task plan validates in under 2 s, growing about
linearly with tasks plus edges):

- ``chain``: t0 <- t1 <- ... each task depends on the one before and reads its task value
  through a ``{{tasks.<prev>.values.n}}`` reference (the check that the task is upstream);
- ``chain-root``: the same chain, but every task reads the *first* task's value (the farthest
  upstream reference);
- ``fan``: one start task, N tasks after it, one end task after all of them, each middle task
  reading the start task's value.

Whole commands are timed (interpreter start-up included) and the in-process ``load_plan`` too.

    .venv/bin/python bench/bench_validate.py [--sizes 1000,3000,10000] [--shapes chain,chain-root,fan]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = "# Databricks notebook source\nprint(1)\n"


def tasks_for(shape: str, size: int) -> list[dict[str, object]]:
    if shape in ("chain", "chain-root"):
        tasks: list[dict[str, object]] = [{"task_key": "t0", "notebook": "nb.py"}]
        for i in range(1, size):
            source = "t0" if shape == "chain-root" else f"t{i - 1}"
            tasks.append({"task_key": f"t{i}", "notebook": "nb.py", "depends_on": [f"t{i - 1}"],
                          "parameters": {"n": f"{{{{tasks.{source}.values.n}}}}"}})
        return tasks
    middle = [{"task_key": f"m{i}", "notebook": "nb.py", "depends_on": ["start"],
               "parameters": {"n": "{{tasks.start.values.n}}"}} for i in range(size - 2)]
    return [{"task_key": "start", "notebook": "nb.py"}, *middle,
            {"task_key": "end", "notebook": "nb.py", "depends_on": [t["task_key"] for t in middle]}]


def write_plan(folder: Path, shape: str, size: int, form: str) -> Path:
    import json

    import yaml

    data = {"name": f"{shape}-{size}", "tasks": tasks_for(shape, size)}
    path = folder / f"{shape}-{size}.{form}"
    if form == "json":
        path.write_text(json.dumps(data, indent=1))
    else:
        path.write_text(yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--shapes", default="chain,chain-root,fan")
    parser.add_argument("--formats", default="yaml,json")
    parser.add_argument("--limit", type=float, default=300.0, help="give up on a command after this many s")
    args = parser.parse_args()
    nbflow = [sys.executable, "-m", "nbflow"]
    # The machine may be shared: CPU seconds of load_plan are steadier than wall seconds.
    print(f"{'shape':<12}{'format':>7}{'tasks':>8}{'command s':>12}{'load_plan s':>13}{'its CPU s':>11}  result")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "nb.py").write_text(NOTEBOOK)
        for shape, form in ((sh, f) for sh in args.shapes.split(",") for f in args.formats.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                path = write_plan(folder, shape, size, form)
                start = time.perf_counter()
                try:
                    done = subprocess.run([*nbflow, "validate", str(path)], capture_output=True, text=True,
                                          timeout=args.limit)
                    command = f"{time.perf_counter() - start:.2f}"
                    result = "OK" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[:100]}"
                except subprocess.TimeoutExpired:
                    command, result = f">{args.limit:.0f}", "timed out"
                load = cpu = "-"
                if result == "OK":
                    code = ("import sys, time; from nbflow.plan import load_plan; s = time.perf_counter(); "
                            "c = time.process_time(); load_plan(sys.argv[1]); "
                            "print(time.perf_counter() - s, time.process_time() - c)")
                    inner = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                           timeout=args.limit)
                    if inner.returncode == 0:
                        load, cpu = (f"{float(x):.2f}" for x in inner.stdout.split())
                print(f"{shape:<12}{form:>7}{size:>8}{command:>12}{load:>13}{cpu:>11}  {result}", flush=True)


if __name__ == "__main__":
    main()
