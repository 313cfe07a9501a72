"""Comparing a plan's runs: the same plan sequentially and in parallel, on the same cluster
(``nbflow compare``), and the figures and report of any runs compared (``nbflow remote compare``).

Between runs the project's tables are put back as they were before the comparison started, so
that every run does the same work: tables the runs created are dropped (their data too, when
managed), and Delta tables that existed before are restored to the version they had (a Delta
``RESTORE``, with delta-rs). Tables in other formats are left as they are.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from .catalog import Registry
from .plan import load_plan
from .project import processed_dir, project_dir, warehouse_dir
from .report_html import write_report
from .runs import MODES, PlanRun
from .scheduler import Scheduler
from .task_spec import new_run_id


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, tuple[str, int | None]]  # name -> (location, Delta version or None)


def snapshot(project: Path) -> Snapshot:
    tables: dict[str, tuple[str, int | None]] = {}
    for name, entry in Registry(project).tables().items():
        version = None
        if entry.format == "delta" and (Path(entry.location) / "_delta_log").is_dir():
            version = DeltaTable(entry.location).version()
        tables[name] = (entry.location, version)
    return Snapshot(tables)


def reset(project: Path, before: Snapshot, warehouse: Path) -> list[str]:
    """Put the project's tables back as in ``before``; returns what was done, one line each."""
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


@dataclass
class Comparison:
    """Runs of one plan side by side: the runs, a row of figures for each, and where they went."""

    plan: str
    output_dir: Path
    runs: list[PlanRun]
    rows: list[dict[str, Any]]
    report: Path | None = None  # report.html, once written

    def write(self, title: str) -> Path:
        """``report.html`` (every run on one timeline, the figures above) and ``compare.json``."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.report = write_report(self.runs, self.output_dir, title, self.rows)
        (self.output_dir / "compare.json").write_text(json.dumps(self.rows, indent=2), encoding="utf-8")
        return self.report

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints."""
        return {"plan": self.plan, "output_dir": str(self.output_dir), "runs": self.rows}


def compare_locally(plan_path: str | Path, modes: Sequence[str] = MODES, repeat: int = 1,
                    max_workers: int | None = None, output_dir: Path | None = None,
                    comparison_id: str | None = None,
                    say: Callable[[str], None] = lambda line: None) -> Comparison:
    """Run a plan locally in each mode, ``repeat`` times, the project's tables reset between
    runs; each run's notebooks go to ``<output_dir>/<mode>-<n>`` (default ``output_dir``:
    ``processed/<comparison_id>``). ``say`` hears of each reset and each run's end."""
    comparison_id = comparison_id or new_run_id()
    project = project_dir()
    folder = output_dir or processed_dir(project) / comparison_id
    plan, notebooks = load_plan(plan_path)
    before = snapshot(project)
    comparison = Comparison(plan.name, folder, [], [])
    sequential_wall: float | None = None
    for mode in modes:
        for n in range(repeat):
            if comparison.runs:
                for line in reset(project, before, warehouse_dir(project)):
                    say(f"reset: {line}")
            scheduler = Scheduler(plan, notebooks, folder / f"{mode}-{n + 1}", f"{comparison_id}-{mode}-{n + 1}",
                                  mode=mode, max_workers=max_workers)
            run = scheduler.execute()
            if mode == "sequential" and sequential_wall is None:
                sequential_wall = (run.end_ms - run.start_ms) / 1000
            comparison.runs.append(run)
            comparison.rows.append(figures(run, sequential_wall, scheduler.max_workers))
            say(f"{mode} #{n + 1}: {run.result_state} in {comparison.rows[-1]['wall_s']} s")
    return comparison
