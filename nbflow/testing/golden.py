"""The golden store: what a notebook or plan task produced last time it was accepted, kept as
text files beside the tests, and the check of a new run against it.

A golden folder is ``<root>/__nbflow_golden__/<notebook path>/<parameter set>/`` (a plan's task:
``<plan path>/<task key>/``) and holds one sanitized JSON file per layer stored
(:mod:`nbflow.testing.snapshot`): ``result.json`` (status, exit value, task values, variables,
parameters), ``tables.json``, ``outputs.json``, and ``timings.json`` for the optional slow-down
check. Keys are sorted and indented, so that a change reviews well in a pull request.

Levels say what is checked (``errors`` < ``result`` < ``tables`` < ``outputs``; several may be
given); modes say what happens: ``check`` compares (a missing golden fails when the ``CI``
environment variable is true, and only warns otherwise), ``update`` rewrites, ``update-missing``
writes those that do not exist yet, ``off`` does nothing.
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
_LEVEL_LAYERS = {"errors": (), "result": ("result", "plan"), "tables": ("tables",), "outputs": ("outputs",)}


def parse_levels(text: str) -> tuple[str, ...]:
    """``result,tables`` as levels (each one known)."""
    levels = tuple(part.strip() for part in text.split(",") if part.strip())
    for level in levels:
        if level not in LEVELS:
            raise InputError(f"golden level {level!r}: one of {', '.join(LEVELS)} (comma-separated)")
    return levels


def layers_for(levels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(layer for layer in LAYERS if any(layer in _LEVEL_LAYERS[level] for level in levels))


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclass
class GoldenResult:
    """What a check did: ``same``, ``different``, ``written``, ``missing`` (not failing) or
    ``missing-in-ci`` (failing), ``off``; and what differed."""

    state: str
    folder: Path
    differences: list[Difference] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.state in ("different", "missing-in-ci")


def check(snapshot: Snapshot, folder: Path, levels: tuple[str, ...], mode: str,
          options: Options | None = None, max_slowdown: float | None = None) -> GoldenResult:
    """Check ``snapshot`` against the golden in ``folder`` (or write it, as ``mode`` says)."""
    if mode not in MODES:
        raise InputError(f"golden mode {mode!r}: one of {', '.join(MODES)}")
    options = options or Options()
    layers = layers_for(levels)
    if mode == "off" or not layers:
        return GoldenResult("off", folder)
    exists = any((folder / f"{layer}.json").is_file() for layer in (*layers, "timings"))
    if mode == "update" or (mode == "update-missing" and not exists):
        write(snapshot, folder, layers, options)
        return GoldenResult("written", folder)
    if not exists:
        return GoldenResult("missing-in-ci" if is_ci() else "missing", folder)
    golden = stored_snapshot(folder)
    current = Snapshot(snapshot.origin, snapshot.kind, {k: v for k, v in snapshot.layers.items() if k in layers})
    differences = compare(golden, current, replace(options, layers=layers))
    if max_slowdown and "timings" in golden.layers and "timings" in snapshot.layers:
        timing = replace(options, layers=("timings",), slowdown=max_slowdown)
        differences += [d for d in compare(golden, snapshot, timing) if str(d.note).startswith("slower")]
    return GoldenResult("different" if differences else "same", folder, differences)


def write(snapshot: Snapshot, folder: Path, layers: tuple[str, ...], options: Options) -> None:
    """The golden folder, rewritten: the layers asked for (sanitized) and the timings."""
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for layer in (*layers, "timings"):
        if layer in snapshot.layers:
            data: Any = snapshot.layers[layer]
            data = _rounded(data) if layer == "timings" else options.sanitizer.data(data)
            (folder / f"{layer}.json").write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n",
                                                  encoding="utf-8")


def _rounded(value: Any) -> Any:
    """Durations to 0.1 s: a golden rewritten by the same run elsewhere changes little."""
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
