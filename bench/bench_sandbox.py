"""What the sandbox costs (see nbflow.sandbox): its set-up in a kernel, the starter's probe, and a
cold ``nbflow run`` with and without it.

- enter: ``sandbox.enter`` in a fresh single-threaded process (``python -m nbflow.sandbox
  --time``): new user and mount namespaces, the tmpfs root, a bind per top-level entry of ``/``,
  the three folders, pivot_root. A kernel pays this once, before ipykernel starts.
- probe: the throwaway process in which the process that starts kernels tries the same set-up
  once (its result is inherited by everything it starts: one probe per ``nbflow run``).
- cold run: ``nbflow run`` of a one-cell notebook, ``NBFLOW_SANDBOX=0`` against the default,
  alternating, in a scratch project.
- volumes: in a sandboxed process, ``sandbox.refresh_volumes`` binding 50 new volumes (per
  volume), a refresh with nothing new (what a cell pays after any registry change that is not a
  volume's), undoing the 50 binds, and the check a cell pays when the registry did not change
  (``Lakehouse.follow_volumes``: a stat of the registry file, no mount work).

    .venv/bin/python bench/bench_sandbox.py [--repeat 20]
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
from pathlib import Path

from nbflow import sandbox
from nbflow.catalog import Registry

VOLUMES = 50


def volumes_child(project: Path, repeat: int) -> dict[str, float]:
    """In a fresh process: enter the sandbox, then time the volume binds (milliseconds)."""
    assert sandbox.enter(sandbox.layout(project)) is None
    registry = Registry(project)
    for number in range(VOLUMES):
        registry.create_volume(f"main.default.v{number}")
    volumes = {name: entry.location for name, entry in registry.volumes().items()}
    began = time.perf_counter()
    assert sandbox.refresh_volumes(registry.volumes_root, volumes) == []
    bind = (time.perf_counter() - began) * 1000
    idle = []
    for _ in range(repeat):
        began = time.perf_counter()
        sandbox.refresh_volumes(registry.volumes_root, volumes)
        idle.append((time.perf_counter() - began) * 1000)
    unchanged = []
    for _ in range(repeat):
        began = time.perf_counter()
        registry.generation()  # what follow_volumes compares, before any mount work
        unchanged.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    sandbox.refresh_volumes(registry.volumes_root, {})
    unbind = (time.perf_counter() - began) * 1000
    return {"bind_per_volume": bind / VOLUMES, "refresh_nothing_new": statistics.median(idle),
            "unbind_per_volume": unbind / VOLUMES, "unchanged_check": statistics.median(unchanged)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--volumes-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.volumes_child:
        print(json.dumps(volumes_child(Path(args.volumes_child), args.repeat)))
        return 0
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-sandbox-") as scratch:
        project = Path(scratch)
        plan = sandbox.layout(project)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBFLOW_")}
        enter_ms = []
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, "-m", "nbflow.sandbox", "--time", plan.to_json()],
                                  capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                print(f"no sandbox here: {done.stdout.strip()}")
                return 1
            enter_ms.append(float(done.stdout) * 1000)
        probe_ms = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            assert sandbox._probe(plan) is None
            probe_ms.append((time.perf_counter() - began) * 1000)
        done = subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat), "--volumes-child",
                               str(project / "volumes")], capture_output=True, text=True, env=env, check=True)
        volumes = json.loads(done.stdout)
        notebook = project / "one.py"
        notebook.write_text("# Databricks notebook source\nx = 1\n")
        runs: dict[str, list[float]] = {"off": [], "on": []}
        for round_number in range(max(args.repeat // 2, 4)):
            # Each case first in every other round: a machine that speeds up or slows down
            # during the run favours neither.
            for case in ("off", "on") if round_number % 2 else ("on", "off"):
                case_env = {**env, "NBFLOW_PROJECT_DIR": scratch, **({"NBFLOW_SANDBOX": "0"} if case == "off" else {})}
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "nbflow", "run", str(notebook)], capture_output=True,
                               env=case_env, check=True)
                runs[case].append(time.perf_counter() - began)
    print(f"enter (in the kernel, before ipykernel): median {statistics.median(enter_ms):.2f} ms, "
          f"max {max(enter_ms):.2f} ms ({args.repeat} processes)")
    print(f"probe (once per nbflow command):         median {statistics.median(probe_ms):.1f} ms")
    print(f"volumes: bind {volumes['bind_per_volume']:.3f} ms per volume, unbind "
          f"{volumes['unbind_per_volume']:.3f} ms per volume ({VOLUMES} volumes); a refresh with nothing new "
          f"{volumes['refresh_nothing_new']:.3f} ms; a cell with the registry unchanged "
          f"{volumes['unchanged_check']:.4f} ms")
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(f"cold nbflow run: NBFLOW_SANDBOX=0 {off:.2f} s, sandbox {on:.2f} s ({on / off:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
