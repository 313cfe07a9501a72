"""``nbflow stubs``: the notebook's names for editors (:mod:`nbflow.stubs`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..project import project_dir
from ..stubs import STUB_NAME, write_stubs
from .commands import short_help


@click.command("stubs", short_help=short_help("stubs"))
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
def stubs(folder: Path | None) -> None:
    """Write __builtins__.pyi into FOLDER (default: the project) so that editors (Pyright,
    Pylance) know spark, dbutils, display and the other names of a notebook."""
    target = (folder or project_dir()).resolve()
    if not target.is_dir():
        raise InputError(f"{target}: no such folder")
    try:
        written = write_stubs(target)
    except OSError as exc:
        raise InputError(f"cannot write {target / STUB_NAME}: {exc.strerror or exc}") from None
    click.echo(f"wrote {written}")
