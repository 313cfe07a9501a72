"""What closing the cluster's door costs: Sail behind nbflow's gate against Sail on plain TCP.

Two clusters of the same Sail, in two scratch projects:

- ``gated``: ``nbflow cluster start`` as it is by default: Sail in a private network namespace, a
  Unix socket (mode 0600) in front, each connection's user checked and its bytes relayed;
- ``open``: ``--port N``: Sail on 127.0.0.1:N, reached directly, open to every local process.

For each it measures, over ``--repeat`` rounds (medians, and the 90th percentile for queries):

- attach: ``nbflow.cluster.attach.attach`` up to the answer of a first ``SELECT 1`` (a kernel's first
  Spark call pays this);
- small query: ``spark.range(1000).selectExpr('sum(id)').collect()`` (a round trip);
- transfer: ``spark.range(N).toPandas()`` of ``--rows`` rows (the gate relays every byte);

and the CPU the gate process itself spent over all of it, beside Sail's.

    .venv/bin/python bench/bench_cluster_access.py [--repeat 30] [--rows 2000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from nbflow.cluster import attach as cluster_attach
from nbflow.cluster import processes
from nbflow.cluster import server as cluster
from nbflow.cluster.state import ClusterState


def timed(action: Callable[[], Any], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return times


def measure(state: ClusterState, repeat: int, rows: int) -> dict[str, list[float]]:
    def attach() -> None:
        spark = cluster_attach.attach(state)
        spark.sql("SELECT 1").collect()
        spark.stop()

    spark = cluster_attach.attach(state)
    spark.sql("SELECT 1").collect()  # warm both paths before timing
    results = {
        "attach": timed(attach, repeat),
        "small query": timed(lambda: spark.range(1000).selectExpr("sum(id)").collect(), repeat * 3),
        "transfer": timed(lambda: spark.range(rows).toPandas(), max(repeat // 5, 3)),
    }
    spark.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-access-") as scratch:
        found: dict[str, dict[str, list[float]]] = {}
        cpu: dict[str, float] = {}
        for name in ("gated", "open"):
            project = Path(scratch) / name
            project.mkdir()
            try:
                state = cluster.start(project, "sail", port=None if name == "gated" else processes.free_port())
                print(f"{name}: {state.url} ({state.access.split(';')[0]})", file=sys.stderr)
                server = psutil.Process(state.pid)
                children = server.children(recursive=True)
                found[name] = measure(state, args.repeat, args.rows)
                if name == "gated":  # the gate is the recorded process; Sail is its child
                    times = server.cpu_times()
                    cpu["gate"] = times.user + times.system
                    cpu["sail"] = sum(c.cpu_times().user + c.cpu_times().system for c in children)
            finally:
                cluster.stop(project)
    print(f"{'':18}{'gated ms':>10}{'open ms':>10}{'cost ms':>10}{'ratio':>7}")
    rows = [(f"{what} (median)", [statistics.median(found[n][what]) for n in ("gated", "open")])
            for what in ("attach", "small query", "transfer")]
    rows.append(("small query (p90)", [statistics.quantiles(found[n]["small query"], n=10)[-1]
                                       for n in ("gated", "open")]))
    for label, (gated, plain) in rows:
        print(f"{label:<18}{gated:>10.1f}{plain:>10.1f}{gated - plain:>10.1f}{gated / plain:>7.2f}")
    print(f"(transfer: {args.rows:,} rows; attach and small query: {args.repeat} and {args.repeat * 3} rounds)")
    if cpu:
        print(f"gated CPU over the rounds: gate {cpu['gate']:.2f} s, sail {cpu['sail']:.2f} s "
              f"(gate/sail {cpu['gate'] / max(cpu['sail'], 1e-9):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
