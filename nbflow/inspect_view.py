"""The human view of ``nbflow inspect``: a few rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render(data: dict[str, Any]) -> None:
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
