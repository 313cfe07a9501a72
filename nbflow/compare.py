"""``nbflow compare plan.yaml``: the same plan sequentially and in parallel, on the same cluster.

Between runs the project's tables are put back as they were before the comparison started, so
that every run does the same work: tables the runs created are dropped (their data too, when
managed), and Delta tables that existed before are restored to the version they had (a Delta
``RESTORE``, with delta-rs). Tables in other formats are left as they are.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Registry
from .runs import PlanRun


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, tuple[str, int | None]]  # name -> (location, Delta version or None)


def snapshot(project: Path) -> Snapshot:
    from deltalake import DeltaTable

    tables: dict[str, tuple[str, int | None]] = {}
    for name, entry in Registry(project).tables().items():
        version = None
        if entry.format == "delta" and (Path(entry.location) / "_delta_log").is_dir():
            version = DeltaTable(entry.location).version()
        tables[name] = (entry.location, version)
    return Snapshot(tables)


def reset(project: Path, before: Snapshot, warehouse: Path) -> list[str]:
    """Put the project's tables back as in ``before``; returns what was done, one line each."""
    from deltalake import DeltaTable

    done = []
    registry = Registry(project)
    for name, entry in registry.tables().items():
        old = before.tables.get(name)
        if old is None or old[0] != entry.location:
            registry.unregister(name, entry.location)
            location = Path(entry.location).resolve()
            if entry.managed and warehouse.resolve() in location.parents:
                shutil.rmtree(location, ignore_errors=True)
            done.append(f"dropped {name}")
        elif old[1] is not None:
            table = DeltaTable(entry.location)
            if table.version() != old[1]:
                table.restore(old[1])
                done.append(f"restored {name} to version {old[1]}")
    return done


def figures(run: PlanRun, sequential_wall: float | None, workers: int) -> dict[str, Any]:
    """Wall time, summed task time, speed-up against sequential, and parallel efficiency."""
    wall = (run.end_ms - run.start_ms) / 1000
    task_s = sum((a.end_ms - a.start_ms) / 1000 for t in run.tasks.values() for a in t.attempts)
    speedup = (sequential_wall / wall) if sequential_wall and wall else 1.0
    return {"mode": run.mode, "run_id": run.run_id, "status": run.result_state, "wall_s": round(wall, 2),
            "task_s": round(task_s, 2), "speedup": round(speedup, 2),
            "efficiency": round(speedup / workers, 2) if workers else None, "workers": workers}
