"""``nbflow inspect``: what an nbflow run recorded in an executed notebook, as JSON or tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..results import read_result
from ..runs import NotebookResult
from .commands import short_help


@click.command(short_help=short_help("inspect"))
@click.argument("executed", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(executed: Path, as_json: bool) -> None:
    """Show what an nbflow run recorded in an EXECUTED notebook."""
    data = recorded(read_result(executed))
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    render(data)


def recorded(result: NotebookResult) -> dict[str, Any]:
    """What ``inspect --json`` prints of a run's result."""
    return {
        "notebook": result.notebook,
        "output": result.output,
        "status": result.status,
        "exit_value": result.exit_value,
        "exit_truncated": result.exit_truncated,
        "parameters": result.parameters,
        "variables": result.variables,
        "task_values": result.task_values,
        "tables_written": result.tables_written,
        "error": None if result.error is None else result.error.summary(),
        "cells": result.cells,
        "children": result.children,
        "duration_s": result.duration_s,
    }


def render(data: dict[str, Any]) -> None:
    """The human view: a few rich tables."""
    console = Console()
    console.print(f"[bold]{data['status']}[/bold]  {data['notebook']}")
    if data["duration_s"] is not None:
        console.print(f"duration: {data['duration_s']:.2f} s")
    if data["exit_value"] is not None:
        suffix = " (truncated to 5 MB)" if data["exit_truncated"] else ""
        console.print(f"exit value{suffix}: {data['exit_value'][:500]!r}")
    error = data["error"]
    if error:
        console.print(f"[red]failed at cell {error['cell_index']}: {error['ename']}: {error['evalue']}[/red]")
    if data["parameters"]:
        table = Table("parameter", "value", "source", title="Parameters")
        for name, entry in data["parameters"].items():
            table.add_row(name, repr(entry.get("value")), str(entry.get("source")))
        console.print(table)
    if data["variables"]:
        table = Table("variable", "type", "value", title="Variables")
        for name, entry in data["variables"].items():
            table.add_row(name, entry["type"], entry["repr"])
        console.print(table)
    if data["task_values"]:
        table = Table("task value", "value", title="Task values")
        for key, value in data["task_values"].items():
            table.add_row(key, repr(value))
        console.print(table)
    if data["tables_written"]:
        console.print("tables written: " + ", ".join(data["tables_written"]))
    if data["children"]:
        table = Table("child notebook", "status", "exit value", "executed", title="dbutils.notebook.run")
        for child in data["children"]:
            table.add_row(str(child.get("notebook")), str(child.get("status")),
                          repr(child.get("exit_value")), str(child.get("output")))
        console.print(table)
    table = Table("cell", "type", "status", "seconds", title="Cells")
    for cell in data["cells"]:
        seconds = "" if cell["duration_s"] is None else f"{cell['duration_s']:.3f}"
        table.add_row(str(cell["index"]), cell["cell_type"], cell["status"], seconds)
    console.print(table)
