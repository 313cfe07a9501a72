"""``pytest --nbflow`` against ``pytest --nbmake`` on the same notebooks, in the same run.

N small notebooks (a few cells each: arithmetic, a print, a pandas frame) in a fresh folder; each
tool runs them all as tests, one after another (no xdist), and the whole ``pytest`` command is
timed, start-up included. nbflow runs twice: without a cluster (a fresh kernel per notebook, as
nbmake) and with the project's cluster up (warm kernels from its pool service, as a developer
working on the project has it). Printed: seconds per notebook and the ratio to nbmake.

    .venv/bin/python bench/bench_pytest_plugin.py [--notebooks N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

CELLS = ["total = sum(range(1000))", "print('total', total)",
         "import pandas as pd\nframe = pd.DataFrame({'x': range(10)})\nframe.describe()"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=10)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.notebooks):
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nbformat.write(nb, folder / f"nb{i:02d}.ipynb")
        env = {**os.environ, "NBFLOW_PROJECT_DIR": str(folder)}
        env.pop("CI", None)

        def timed(*options: str) -> float:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
                                  cwd=folder, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0 or f"{args.notebooks} passed" not in done.stdout:
                raise SystemExit(f"pytest {' '.join(options)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
            return wall / args.notebooks

        nbmake = timed("--nbmake", "-p", "no:nbflow")
        cold = timed("--nbflow", "-p", "no:nbmake")
        subprocess.run([str(bin_dir / "nbflow"), "cluster", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            timed("--nbflow", "-p", "no:nbmake")  # the pool grows to its size on first use
            warm = timed("--nbflow", "-p", "no:nbmake")
        finally:
            subprocess.run([str(bin_dir / "nbflow"), "cluster", "stop"], env=env, stdout=subprocess.DEVNULL)
    print(f"{args.notebooks} notebooks, one pytest command each tool, per notebook:")
    print(f"  nbmake                          {nbmake:.2f} s")
    print(f"  nbflow, no cluster (cold)       {cold:.2f} s   {cold / nbmake:.2f}x nbmake")
    print(f"  nbflow, cluster up (warm pool)  {warm:.2f} s   {warm / nbmake:.2f}x nbmake")
    return 0


if __name__ == "__main__":
    sys.exit(main())
