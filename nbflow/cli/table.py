"""``nbflow table``: the project's tables, read with delta-rs (no cluster needed)."""

from __future__ import annotations

import json
from typing import Any

import click
from deltalake import DeltaTable
from rich.console import Console
from rich.table import Table

from ..catalog import Registry, TableEntry, describe
from ..project import project_dir, warehouse_dir
from ..testing.tables import lookup
from .commands import short_help


@click.group("table", short_help=short_help("table"))
def table() -> None:
    """The tables in the project's local lakehouse."""


@table.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_tables(as_json: bool) -> None:
    """Every table: name, location, format, Delta version and row count."""
    rows = [_facts(entry) for entry in Registry(project_dir()).tables().values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    view = Table(title="Tables")
    view.add_column("name", no_wrap=True)  # three-level names are what users copy: never cut
    for column in ("format", "version", "rows"):
        view.add_column(column)
    view.add_column("location", overflow="fold")
    for row in rows:
        view.add_row(row["name"], row["format"], str(row["version"]), str(row["rows"]), row["location"])
    Console().print(view)


@table.command("show")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Rows to show.")
@click.option("--history", is_flag=True, help="Also show the table's Delta history.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, limit: int, history: bool, as_json: bool) -> None:
    """One table's facts and first rows (NAME: catalog.schema.table; schema.table and table are
    looked up in `main`, then in the legacy `hive_metastore`)."""
    entry = lookup(project_dir(), name)
    facts = _facts(entry)
    data: dict[str, Any] = {**facts, "sample": [], "history": None}
    if entry.format == "delta" and facts.get("error") is None:
        delta = DeltaTable(entry.location)
        # The first rows only (not the whole table), and not by to_pyarrow_table(): its scan
        # threads sometimes outlive the interpreter's end and abort it (delta-rs #2184).
        frame = delta.to_pyarrow_dataset().head(limit).to_pandas()
        data["columns"] = list(frame.columns)
        data["sample"] = json.loads(frame.to_json(orient="records", date_format="iso"))
        if history:
            data["history"] = [
                {"version": h.get("version"), "timestamp": h.get("timestamp"), "operation": h.get("operation")}
                for h in delta.history()
            ]
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_show(data)


@table.command("rebuild")
def rebuild() -> None:
    """Rebuild a damaged table registry from its last good copy and the warehouse's Delta tables."""
    tables, notes = Registry(project_dir()).rebuild(warehouse_dir(project_dir()))
    for note in notes:
        click.echo(note)
    click.echo(f"the registry now holds {len(tables)} table(s): " + (", ".join(sorted(tables)) or "none"))


def _facts(entry: TableEntry) -> dict[str, Any]:
    try:
        return describe(entry)
    except Exception as exc:  # a table whose folder was removed by hand: say so, keep listing
        return {"name": entry.full_name, "location": entry.location, "format": entry.format,
                "version": None, "rows": None, "error": f"cannot read: {exc}"}


def _print_show(data: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]{data['name']}[/bold]  {data['format']}  version {data['version']}  "
                  f"{data['rows']} rows\n{data['location']}")
    if data.get("error"):
        console.print(f"[red]{data['error']}[/red]")
    if data["sample"]:
        view = Table(*data["columns"])
        for row in data["sample"]:
            view.add_row(*(str(row[c]) for c in data["columns"]))
        console.print(view)
    if data["history"]:
        view = Table("version", "timestamp", "operation", title="History")
        for h in data["history"]:
            view.add_row(str(h["version"]), str(h["timestamp"]), str(h["operation"]))
        console.print(view)
