"""The ``nbflow`` group: the console script's entry point (``main``) and ``python -m nbflow``."""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click

from .commands import COMMANDS
from .exits import errors_handled


class Nbflow(click.Group):
    """nbflow's commands, each imported when it runs (see :mod:`nbflow.cli.commands`), all run
    under the one error handler."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        # `nbflow --help` and `nbflow cluster status` need not import plans, the scheduler and the
        # SDK: a command's module is imported when the command runs.
        module = importlib.import_module(f"{__package__}.{entry.module}")  # lazy: only the command run
        command: click.Command = getattr(module, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name].short_help) for name in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context) -> Any:
        with errors_handled():
            return super().invoke(ctx)


@click.group(cls=Nbflow, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nbflow")
def cli() -> None:
    """Run Databricks notebooks locally, the way Databricks runs them."""


def main() -> None:
    try:
        cli(prog_name="nbflow")
    finally:
        # The interpreter's last garbage collection walks every object the command made (pydantic's
        # schemas, notebooks, a run's records): 0.25 s after a plan run, for a process that is
        # ending. Frozen objects are not walked; they are still freed as their modules are cleared.
        gc.freeze()
