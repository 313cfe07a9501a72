"""Cold run of one trivial notebook: ``nbflow run`` against plain ``papermill``, same machine, same run.

Each repetition starts a fresh process and a fresh kernel, as a user's command line does; the two
commands alternate so that drift in machine load hits both alike. Prints the median wall time of
each and their ratio. The target for issue 2: nbflow at most 1.3x papermill.

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


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NBFLOW_PROJECT_DIR": tmp}
        commands = {
            "papermill": [str(bin_dir / "papermill"), str(NOTEBOOK), f"{tmp}/pm.ipynb", "--no-progress-bar",
                          "-k", "python3"],
            "nbflow": [str(bin_dir / "nbflow"), "run", str(NOTEBOOK), "--output-dir", f"{tmp}/nbflow"],
        }
        for command in commands.values():  # warm the file cache; not measured
            timed(command, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                samples[name].append(timed(command, env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["nbflow"] / medians["papermill"]
    print(f"cold run of {NOTEBOOK.name}, median of {args.repeat} (wall seconds)")
    for name, values in samples.items():
        spread = f"min {min(values):.3f}  max {max(values):.3f}"
        print(f"  {name:<10} {medians[name]:.3f} s   ({spread})")
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"  ratio nbflow/papermill: {ratio:.2f}x ({verdict} the {TARGET_RATIO}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
