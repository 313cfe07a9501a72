"""``nbflow lab``: JupyterLab for the project (:mod:`nbflow.jupyter.lab`)."""

from __future__ import annotations

import sys

import click

from ..project import project_dir
from .commands import short_help


@click.command("lab", short_help=short_help("lab"), context_settings={"ignore_unknown_options": True})
@click.option("--port", type=click.IntRange(0, 65535), help="The port (default: 8888, or the next free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.argument("jupyter_args", nargs=-1, type=click.UNPROCESSED)
def lab(port: int | None, no_browser: bool, jupyter_args: tuple[str, ...]) -> None:
    """JupyterLab for the project: the nbflow kernel by default, Databricks source notebooks
    (.py, .sql) opened as notebooks and saved back as source. Other arguments go to JupyterLab
    (e.g. `nbflow lab -- --ServerApp.ip=0.0.0.0`)."""
    from ..jupyter.lab import run_lab  # lazy: Jupyter's server, only for this command

    sys.exit(run_lab(project_dir(), port, not no_browser, jupyter_args))
