"""The golden store: what a notebook or plan task produced last time it was accepted, kept as
text files beside the tests, and the check of a new run against it.

A golden folder is ``<root>/__nbflow_golden__/<notebook path>/<parameter set>/`` (a plan's task:
``<plan path>/<task key>/``) and holds one sanitized JSON file per layer stored
(:mod:`nbflow.testing.snapshot`): ``result.json`` (status, exit value, task values, variables,
parameters), ``tables.json``, ``outputs.json``, and ``timings.json`` for the optional slow-down
check. Keys are sorted and indented, so that a change reviews well in a pull request.

Levels say what is checked, each including those below it: ``errors`` (nothing stored: an item
fails when its notebook fails, whatever the level) < ``result`` < ``tables`` < ``outputs``. Modes
say what happens: ``check`` compares (a missing golden, or a layer missing from it, fails when
the ``CI`` environment variable is true and only warns otherwise), ``update`` rewrites,
``update-missing`` writes the goldens, and the layers of a golden, that do not exist yet, ``off``
does nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from .differences import Difference, Options, compare
from .snapshot import LAYERS, Snapshot, stored_snapshot

GOLDEN_DIR = "__nbflow_golden__"
LEVELS = ("errors", "result", "tables", "outputs")
MODES = ("check", "update", "update-missing", "off")
DEFAULT_LEVELS = ("result", "tables")
SLOWDOWN_FLOOR_S = 5.0  # --nbflow-max-slowdown: a notebook this much slower is never noise
_LEVEL_LAYERS = {"errors": (), "result": ("result", "plan"), "tables": ("tables",), "outputs": ("outputs",)}


def parse_levels(text: str) -> tuple[str, ...]:
    """``result,tables`` as levels (each one known)."""
    levels = tuple(part.strip() for part in text.split(",") if part.strip())
    for level in levels:
        if level not in LEVELS:
            raise InputError(f"golden level {level!r}: one of {', '.join(LEVELS)} (comma-separated)")
    return levels


def layers_for(levels: tuple[str, ...]) -> tuple[str, ...]:
    """The layers the highest of ``levels`` checks: its own and those of the levels below it."""
    top = max((LEVELS.index(level) for level in levels), default=0)
    return tuple(layer for layer in LAYERS if any(layer in _LEVEL_LAYERS[level] for level in LEVELS[:top + 1]))


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclass
class GoldenResult:
    """What a check did: ``same``, ``different``, ``written``, ``missing`` (not failing) or
    ``missing-in-ci`` (failing), ``off``; and what differed."""

    state: str
    folder: Path
    differences: list[Difference] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # layers the golden lacks

    @property
    def failed(self) -> bool:
        return self.state in ("different", "missing-in-ci")


def check(snapshot: Snapshot, folder: Path, levels: tuple[str, ...], mode: str,
          options: Options | None = None, max_slowdown: float | None = None) -> GoldenResult:
    """Check ``snapshot`` against the golden in ``folder`` (or write it, as ``mode`` says)."""
    if mode not in MODES:
        raise InputError(f"golden mode {mode!r}: one of {', '.join(MODES)}")
    options = options or Options()
    layers = tuple(layer for layer in layers_for(levels) if layer in snapshot.layers)
    if mode == "off" or not layers:
        return GoldenResult("off", folder)
    stored = [layer for layer in layers if (folder / f"{layer}.json").is_file()]
    if mode == "update" or (mode == "update-missing" and not stored):
        write(snapshot, folder, layers, options, fresh=True)
        return GoldenResult("written", folder)
    missing = [layer for layer in layers if layer not in stored]
    if mode == "update-missing":
        write(snapshot, folder, tuple(missing), options, fresh=False)
        missing = []
    differences: list[Difference] = []
    if stored:
        golden = stored_snapshot(folder)
        differences = compare(golden, snapshot, replace(options, layers=tuple(stored)))
        if max_slowdown and "timings" in golden.layers:
            timing = replace(options, layers=("timings",), slowdown=max_slowdown, slowdown_floor_s=SLOWDOWN_FLOOR_S)
            differences += [d for d in compare(golden, snapshot, timing) if d.note.startswith("slower")]
    if differences:
        return GoldenResult("different", folder, differences)
    if missing:
        return GoldenResult("missing-in-ci" if is_ci() else "missing", folder, missing=missing)
    return GoldenResult("same", folder)


def write(snapshot: Snapshot, folder: Path, layers: tuple[str, ...], options: Options, fresh: bool) -> None:
    """The layers asked for (sanitized) and the timings in the golden folder; ``fresh``: the
    folder rewritten, else the layers added to it."""
    if fresh and folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for layer in (*layers, "timings") if fresh else layers:
        if layer in snapshot.layers:
            data: Any = snapshot.layers[layer]
            data = _rounded(data) if layer == "timings" else options.sanitizer.data(data, layer)
            # In the snapshot's own order (cells as the notebook has them; names already sorted).
            (folder / f"{layer}.json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


def _rounded(value: Any) -> Any:
    """Durations to 0.1 s: a golden rewritten by the same run elsewhere changes little."""
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
