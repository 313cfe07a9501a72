"""One trivial notebook: ``nbflow run`` against plain ``papermill``, same machine, same run.

Three commands, each a fresh process as a user's command line is; they alternate so that drift
in machine load hits all alike:

- ``papermill``: plain papermill, a fresh kernel;
- ``nbflow cold``: ``nbflow run`` with no cluster running: a fresh kernel, as papermill
  (target for issue 2: at most 1.3x papermill);
- ``nbflow warm``: ``nbflow run`` with the project's cluster up: the notebook runs on a warm
  kernel of its pool service (target for issue 14: at most 0.25x papermill).

Prints the median wall time of each and the ratios.

    .venv/bin/python bench/bench_cold_run.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "tests" / "notebooks" / "trivial.ipynb"
TARGET_RATIO = 1.3
WARM_TARGET_RATIO = 0.25


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as cold_dir, tempfile.TemporaryDirectory() as warm_dir:
        cold_env = {**os.environ, "NBFLOW_PROJECT_DIR": cold_dir}
        warm_env = {**os.environ, "NBFLOW_PROJECT_DIR": warm_dir}
        commands = {
            "papermill": ([str(bin_dir / "papermill"), str(NOTEBOOK), f"{cold_dir}/pm.ipynb", "--no-progress-bar",
                           "-k", "python3"], cold_env),
            "nbflow cold": ([str(bin_dir / "nbflow"), "run", str(NOTEBOOK), "--output-dir", f"{cold_dir}/nbflow"],
                            cold_env),
            "nbflow warm": ([str(bin_dir / "nbflow"), "run", str(NOTEBOOK), "--output-dir", f"{warm_dir}/nbflow"],
                            warm_env),
        }
        subprocess.run([str(bin_dir / "nbflow"), "cluster", "start"], check=True, env=warm_env,
                       stdout=subprocess.DEVNULL)
        try:
            for command, env in commands.values():  # warm the file cache (and the pool); not measured
                timed(command, env)
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeat):
                for name, (command, env) in commands.items():
                    samples[name].append(timed(command, env))
        finally:
            subprocess.run([str(bin_dir / "nbflow"), "cluster", "stop"], env=warm_env, stdout=subprocess.DEVNULL)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"one run of {NOTEBOOK.name}, median of {args.repeat} (wall seconds)")
    for name, values in samples.items():
        spread = f"min {min(values):.3f}  max {max(values):.3f}"
        print(f"  {name:<12} {medians[name]:.3f} s   ({spread})")
    for name, target in (("nbflow cold", TARGET_RATIO), ("nbflow warm", WARM_TARGET_RATIO)):
        ratio = medians[name] / medians["papermill"]
        verdict = "within" if ratio <= target else "OVER"
        print(f"  ratio {name}/papermill: {ratio:.2f}x ({verdict} the {target}x target)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
