"""Notebooks of many one-line cells: ``nbflow run`` against plain ``papermill``, in the same run.

Saving the whole notebook at every cell's start and end made the cost quadratic in the number of
cells (1,000 cells took 133 s, 10,000 over 590 s). nbflow now saves on a time budget and at the
end (target: 1,000 cells under 15 s). Whole commands are timed, start-up included.

    .venv/bin/python bench/bench_many_cells.py [--cells 1000,10000] [--limit 900]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat


def write_notebook(folder: Path, cells: int) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {i}") for i in range(cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"cells-{cells}.ipynb"
    nbformat.write(nb, path)
    return path


def timed(command: list[str], limit: float) -> str:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return f">{limit:.0f}"
    if done.returncode != 0:
        return f"exit {done.returncode}"
    return f"{time.perf_counter() - start:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="1000,10000")
    parser.add_argument("--limit", type=float, default=900.0, help="give up on a command after this many s")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    print(f"{'cells':>7}{'nbflow s':>11}{'papermill s':>13}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for cells in (int(c) for c in args.cells.split(",")):
            source = write_notebook(folder, cells)
            ours = timed([str(bin_dir / "nbflow"), "run", str(source), "--output-dir", str(folder / "nbflow")],
                         args.limit)
            theirs = timed([str(bin_dir / "papermill"), "--no-progress-bar", str(source),
                            str(folder / f"papermill-{cells}.ipynb")], args.limit)
            try:
                ratio = f"{float(ours) / float(theirs):.2f}"
            except ValueError:
                ratio = "-"
            print(f"{cells:>7}{ours:>11}{theirs:>13}{ratio:>8}", flush=True)


if __name__ == "__main__":
    main()
