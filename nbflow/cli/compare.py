"""``nbflow compare``: a plan run sequentially and in parallel, their times side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..compare import Comparison, compare_locally
from ..runs import MODES
from .commands import short_help


@click.command(short_help=short_help("compare"))
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--modes", default=",".join(MODES), show_default=True, help="Modes to run, in order.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per mode.")
@click.option("--max-workers", type=click.IntRange(min=1), help="Tasks at once in parallel mode.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare(plan: Path, modes: str, repeat: int, max_workers: int | None, as_json: bool) -> None:
    """Run PLAN sequentially and in parallel, and compare their times (tables reset in between)."""
    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in wanted if m not in MODES]
    if bad or not wanted:
        raise click.BadParameter(f"unknown mode {', '.join(bad) or '(none)'}: use sequential and/or parallel",
                                 param_hint="--modes")
    comparison = compare_locally(plan, wanted, repeat, max_workers, say=lambda line: click.echo(line, err=True))
    comparison.write(f"{comparison.plan}: sequential against parallel")
    show(comparison, as_json)


def show(comparison: Comparison, as_json: bool) -> None:
    """Print a written comparison: its JSON, or a table of its figures and where its report is."""
    if as_json:
        click.echo(json.dumps(comparison.summary(), indent=2))
        return
    click.echo(f"{'mode':<18}{'wall s':>9}{'task s':>9}{'speed-up':>10}{'efficiency':>12}  status")
    for row in comparison.rows:
        click.echo(f"{row['mode']:<18}{row['wall_s']:>9}{row['task_s']:>9}{row['speedup']:>10}"
                   f"{row['efficiency']:>12}  {row['status']}")
    click.echo(f"report: {comparison.report}")
