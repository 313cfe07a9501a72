"""Snapshots: what a run produced, as plain JSON data in layers, ready to compare or store.

A snapshot is read from an executed notebook, from a run folder (``processed/<run-id>``, of a
notebook or of a plan) or from a golden folder (:mod:`nbflow.testing.golden`), and has up to six
layers, each one JSON document:

- ``source``: each cell's type and text;
- ``outputs``: each cell's outputs, normalized: stream text, ``text/plain``, the structured table
  ``display`` writes (schema and rows, not its HTML), an error's name and message (no traceback);
  images and widgets only as what they are;
- ``result``: status, exit value, task values, captured variables, parameters, the error;
- ``tables``: the tables the run wrote (:mod:`nbflow.testing.tables`; the pytest plugin records
  them as it runs a notebook, so golden folders have them, executed notebooks do not);
- ``timings``: durations, per cell and in all;
- ``plan``: for a plan run, each task's state and the job's result.

Cells are keyed by their number (1-based, as the notebook editor shows them, not counting cells
nbflow added) and their title (``cell 3 (Totals)``), so that the keys of two runs agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..results import TABLE_MIME, read_result, user_cells
from ..runs import NotebookResult

LAYERS = ("source", "outputs", "result", "tables", "timings", "plan")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass
class Snapshot:
    """One run's layers (absent layers are missing keys) and where it was read from."""

    origin: str
    kind: str  # "notebook" or "plan"
    layers: dict[str, Any] = field(default_factory=dict)


def read_snapshot(path: Path) -> Snapshot:
    """The snapshot of an executed notebook, a run folder, or a golden folder."""
    path = Path(path)
    try:
        return _read_snapshot(path)
    except OSError as exc:
        raise InputError(f"{exc.filename or path}: cannot be read ({exc.strerror})") from None


def _read_snapshot(path: Path) -> Snapshot:
    if path.is_file():
        return notebook_snapshot(path)
    if (path / "run.json").is_file():
        return run_folder_snapshot(path)
    if any((path / f"{layer}.json").is_file() for layer in LAYERS):
        return stored_snapshot(path)
    if path.is_dir():
        raise InputError(f"{path}: not a run folder (no run.json), an executed notebook or a golden folder")
    raise InputError(f"{path}: no such file or folder")


def notebook_snapshot(path: Path, result: NotebookResult | None = None) -> Snapshot:
    """The snapshot of one executed notebook (its result read from it unless given)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not an executed notebook ({exc})") from None
    if result is None:
        result = read_result(path)
    cells = user_cells(nb)
    code = [(i, c) for i, c in cells if c.get("cell_type") == "code"]
    layers = {
        "source": {cell_label(i, c): {"type": c.get("cell_type"), "source": text_of(c.get("source"))}
                   for i, c in cells},
        "outputs": {cell_label(i, c): [_output(o) for o in c.get("outputs", [])] for i, c in code
                    if not ignores_output(c)},
        "result": result_layer(result),
        "timings": {"total_s": result.duration_s,
                    "cells": {cell_label(i, c): c.get("metadata", {}).get("papermill", {}).get("duration")
                              for i, c in code}},
    }
    return Snapshot(str(path), "notebook", layers)


IGNORE_OUTPUT_TAGS = ("nbflow-ignore-output", "nbval-ignore-output")
_IGNORE_OUTPUT_LINE = re.compile(r"^\s*#\s*(?:NBVAL_IGNORE_OUTPUT|nbflow-ignore-output)\s*$", re.M)


def ignores_output(cell: dict[str, Any]) -> bool:
    """A cell whose outputs are never compared: tagged ``nbflow-ignore-output`` (or nbval's
    ``nbval-ignore-output``), or with a ``# NBVAL_IGNORE_OUTPUT`` / ``# nbflow-ignore-output``
    comment line (a source notebook has no tags)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return any(t in tags for t in IGNORE_OUTPUT_TAGS) or bool(_IGNORE_OUTPUT_LINE.search(text_of(cell.get("source"))))


def result_layer(result: NotebookResult) -> dict[str, Any]:
    error = None
    if result.error is not None:
        cell = None if result.error.cell_index is None else result.error.cell_index + 1
        error = {"cell": cell, "ename": result.error.ename, "evalue": result.error.evalue}
    return {
        "status": str(result.status),
        "exit_value": result.exit_value,
        "task_values": result.task_values,
        "variables": {name: entry.get("value", {"type": entry.get("type"), "repr": entry.get("repr")})
                      for name, entry in sorted(result.variables.items())},
        "parameters": {name: entry.get("value") for name, entry in sorted(result.parameters.items())},
        "error": error,
    }


def run_folder_snapshot(folder: Path) -> Snapshot:
    """A run folder: a plan's (each task's notebook layers under its key) or a notebook's."""
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / 'run.json'}: unreadable ({exc})") from None
    if run.get("format") != "MULTI_TASK":
        outputs = [t.get("output") for t in run.get("tasks", []) if t.get("output")]
        if len(outputs) != 1:
            raise InputError(f"{folder / 'run.json'}: names no executed notebook")
        return notebook_snapshot(_local(folder, outputs[0]))
    layers: dict[str, Any] = {name: {} for name in ("source", "outputs", "result", "tables", "timings")}
    states = {}
    for task in run.get("tasks", []):
        key = str(task.get("task_key"))
        state = task.get("state", {})
        states[key] = state.get("result_state") or state.get("life_cycle_state")
        outputs = [a.get("output") for a in task.get("attempts", []) if a.get("output")]
        executed = _local(folder, outputs[-1]) if outputs else None
        if executed is not None and executed.is_file():
            for name, value in notebook_snapshot(executed).layers.items():
                layers[name][key] = value
    layers["plan"] = {"result_state": (run.get("state") or {}).get("result_state"), "tasks": states}
    return Snapshot(str(folder), "plan", {k: v for k, v in layers.items() if v or k == "plan"})


def stored_snapshot(folder: Path) -> Snapshot:
    """A golden folder: one JSON file per layer stored."""
    layers = {}
    for name in LAYERS:
        file = folder / f"{name}.json"
        if file.is_file():
            try:
                layers[name] = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"{file}: not JSON ({exc})") from None
    kind = "plan" if "plan" in layers else "notebook"
    return Snapshot(str(folder), kind, layers)


def _local(folder: Path, recorded: str) -> Path:
    """A path run.json recorded, or the same file name in ``folder`` (a run folder moved or copied)."""
    path = Path(recorded)
    return path if path.is_file() else folder / path.name


def executed_cell(result: NotebookResult, index: int | None) -> dict[str, Any] | None:
    """User cell ``index`` (from 0) of the executed notebook a result was read from."""
    if index is None or not result.output:
        return None
    try:
        nb = json.loads(Path(result.output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cell = dict(user_cells(nb)).get(index)
    return cell if isinstance(cell, dict) else None


def cell_label(index: int, cell: Mapping[str, Any]) -> str:
    """``cell 3 (Totals)``: a user cell by its number (from 1, as the editor shows it) and title."""
    title = cell.get("metadata", {}).get("title")
    return f"cell {index + 1}" + (f" ({title})" if isinstance(title, str) and title else "")


def text_of(source: Any) -> str:
    """A cell's source or an output's text, which nbformat keeps as a string or a list of lines."""
    return "".join(source) if isinstance(source, list) else str(source or "")


def _output(output: Mapping[str, Any]) -> dict[str, Any]:
    kind = output.get("output_type")
    if kind == "stream":
        return {"stream": output.get("name"), "text": text_of(output.get("text"))}
    if kind == "error":
        return {"error": output.get("ename"), "message": output.get("evalue")}
    data = output.get("data") or {}
    if TABLE_MIME in data:
        return {"table": data[TABLE_MIME]}
    if _WIDGET_MIME in data:
        return {"widget": True}  # its model id changes every run; the widget is the same
    if "text/plain" in data:
        return {"text": text_of(data["text/plain"])}
    return {"mime": sorted(data)}  # an image, HTML alone: compared as what it is
