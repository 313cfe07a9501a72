"""nbflow's commands: where each is defined and its one line of help.

``nbflow --help`` lists them from here without importing them (each pulls in its part of the
library: plans, the scheduler, the SDK...); a command's module is imported when it runs, and
its command takes its ``short_help`` from here, so the line is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Command:
    module: str  # the module of nbflow.cli that defines it, by the command's own name
    short_help: str


COMMANDS: Final[dict[str, Command]] = {
    "cluster": Command("cluster", "Start, stop and look at the project's local Spark cluster."),
    "compare": Command("compare", "Run a PLAN sequentially and in parallel; compare their times."),
    "diff": Command("diff", "Compare two runs; exit 1 if they differ."),
    "inspect": Command("inspect", "Show what an nbflow run recorded in an EXECUTED notebook."),
    "kernel": Command("kernel", "Install the Jupyter kernel with the Databricks runtime."),
    "lab": Command("lab", "JupyterLab for the project, on the nbflow kernel."),
    "remote": Command("remote", "Deploy a PLAN to a Databricks workspace and run it there."),
    "run": Command("run", "Run a NOTEBOOK, or a PLAN of notebooks."),
    "schema": Command("validate", "Print the JSON Schema of a plan file."),
    "serve": Command("serve", "Serve a local Databricks workspace for databricks-sdk."),
    "stubs": Command("stubs", "Declare spark, dbutils, display... for editors."),
    "table": Command("table", "The tables in the project's local lakehouse."),
    "validate": Command("validate", "Check a PLAN without running it."),
}


def short_help(name: str) -> str:
    return COMMANDS[name].short_help
