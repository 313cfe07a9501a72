"""``nbflow diff A B``: what differs between two runs (exit 0 same, 1 different, 2 error)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from ..errors import InputError
from ..project import project_dir
from ..testing.differences import DEFAULT_FAIL_ON, Difference, Options, compare
from ..testing.render import FORMATS, render
from ..testing.sanitize import PRESETS, Rule, Sanitizer, nbval_rules
from ..testing.snapshot import LAYERS, read_snapshot
from .commands import short_help

SAME, DIFFERENT = 0, 1


def _layers(text: str, option: str) -> tuple[str, ...]:
    layers = tuple(part.strip() for part in text.split(",") if part.strip())
    for layer in layers:
        if layer not in LAYERS:
            raise InputError(f"{option} {layer!r}: the layers are {', '.join(LAYERS)}")
    return layers


@click.command(short_help=short_help("diff"))
@click.argument("a", type=click.Path(path_type=Path), metavar="A")
@click.argument("b", type=click.Path(path_type=Path), metavar="B")
@click.option("--layers", default=",".join(LAYERS), show_default=True, metavar="L1,L2",
              help="What to compare: " + ", ".join(LAYERS) + ".")
@click.option("--fail-on", default=",".join(DEFAULT_FAIL_ON), show_default=True, metavar="L1,L2",
              help="The layers whose differences make the exit code 1 (the others are only shown).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="term", show_default=True,
              help="term for a terminal, markdown for a pull request comment, json, html.")
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE", help="Write there, not to stdout.")
@click.option("--sanitize", "rules", multiple=True, metavar="PATTERN=>REPL",
              help="A regular expression replaced on both sides before comparing. Repeatable.")
@click.option("--sanitize-with", "files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE", help="An nbval sanitizer file (regex: / replace: line pairs). Repeatable.")
@click.option("--sanitize-off", "off", multiple=True, metavar="NAME",
              help="Leave out a preset sanitizer (" + ", ".join(PRESETS) + ", or all). Repeatable.")
@click.option("--rtol", type=click.FloatRange(min=0), default=0.0, help="Relative tolerance for numbers.")
@click.option("--atol", type=click.FloatRange(min=0), default=0.0, help="Absolute tolerance for numbers.")
@click.option("--row-order", is_flag=True, help="The order of a displayed table's rows counts.")
@click.option("--slowdown", type=click.FloatRange(min=1), default=2.0, show_default=True, metavar="X",
              help="Timings differ past X times the faster side (plus 1 s).")
def diff(a: Path, b: Path, layers: str, fail_on: str, fmt: str, output: Path | None, rules: tuple[str, ...],
         files: tuple[Path, ...], off: tuple[str, ...], rtol: float, atol: float, row_order: bool,
         slowdown: float) -> None:
    """Compare two runs: executed notebooks, run folders (processed/<run-id>), a run and its
    golden folder, or two folders of them (matched by relative path).

    Run ids, times, temporary paths and the like never count as differences (the sanitizers).
    Exit status: 0 the same, 1 different, 2 an error.
    """
    chosen = _layers(layers, "--layers")
    failing_layers = set(_layers(fail_on, "--fail-on"))
    every: list[str | Rule] = [*rules, *(rule for file in files for rule in nbval_rules(file))]
    options = Options(layers=chosen, sanitizer=Sanitizer(every, off, roots=[project_dir()]), rtol=rtol,
                      atol=atol, row_order=row_order, slowdown=slowdown)
    found = [d for name, left, right in _pairs(a, b) for d in _compare_pair(name, left, right, options)]
    failing = [d for d in found if d.layer in failing_layers]
    text = render(fmt, str(a), str(b), found, failing)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"-o {output}: cannot write it ({exc.strerror})") from None
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.exit(DIFFERENT if failing else SAME)


def _pairs(a: Path, b: Path) -> list[tuple[str, Path | None, Path | None]]:
    """The two sides, or, for two folders of runs, each run with its namesake."""
    for side in (a, b):
        if not side.exists():
            raise InputError(f"{side}: no such file or folder")
    if _is_run(a) or _is_run(b):
        return [("", a, b)]
    left, right = _runs_in(a), _runs_in(b)
    if not left and not right:
        raise InputError(f"{a} and {b}: no executed notebooks, run folders or golden folders in them")
    return [(name, left.get(name), right.get(name)) for name in sorted(left.keys() | right.keys())]


def _is_run(path: Path) -> bool:
    return path.is_file() or (path / "run.json").is_file() or any(
        (path / f"{layer}.json").is_file() for layer in LAYERS)


def _runs_in(folder: Path) -> dict[str, Path]:
    """The runs under ``folder`` by relative path: run folders and golden folders, else notebooks."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if any(str(path).startswith(str(p) + "/") for p in found.values()):
            continue  # inside a run already found
        if (path.is_dir() and _is_run(path)) or (path.suffix == ".ipynb" and path.is_file()):
            found[str(path.relative_to(folder))] = path
    return found


def _compare_pair(name: str, left: Path | None, right: Path | None, options: Options) -> list[Difference]:
    """The differences of one pair; with two folders of runs, each where starts with the run's name."""
    if left is None or right is None:
        return [Difference("result", name, str(left) if left else None, str(right) if right else None,
                           f"only in {'A' if left else 'B'}")]
    found = compare(read_snapshot(left), read_snapshot(right), options)
    if not name:
        return found
    return [dataclasses.replace(d, where=f"{name} › {d.where}") for d in found]
