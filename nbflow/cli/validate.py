"""``nbflow validate`` and ``nbflow schema``: a plan checked, and the schema it is checked against."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..plan import Plan, load_plan
from .commands import short_help


@click.command(short_help=short_help("validate"))
@click.argument("plan", type=click.Path(path_type=Path))
def validate(plan: Path) -> None:
    """Check a PLAN (YAML or JSON) without running it: every problem, with its file and line."""
    loaded, _notebooks = load_plan(plan)
    click.echo(f"{plan}: OK: plan {loaded.name!r}, {len(loaded.tasks)} tasks, order {' -> '.join(loaded.order())}")


@click.command(short_help=short_help("schema"))
def schema() -> None:
    """Print the JSON Schema of a plan file."""
    click.echo(json.dumps(Plan.model_json_schema(), indent=2))
