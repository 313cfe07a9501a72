"""Editor stubs: the names a Databricks notebook has without importing them (``spark``,
``dbutils``, ``display``...), declared for editors and type checkers.

``nbflow stubs`` writes ``__builtins__.pyi`` into the project: Pyright and Pylance (VS Code)
read a file of that name at the root of the project as extra builtins, the way the Databricks
extension for VS Code declares these names. The types are the runtime's own classes (nbflow
ships ``py.typed``), and pyspark's ``SparkSession``, so completion and checks follow the code
that runs.
"""

from __future__ import annotations

from pathlib import Path

STUB_NAME = "__builtins__.pyi"

# One declaration for each name the runtime puts in a notebook's namespace
# (nbflow.runtime.kernel.setup; tests/test_stubs.py keeps the two the same).
DECLARATIONS: dict[str, str] = {
    "spark": "spark: SparkSession",
    "sc": "sc: _NoSparkContext",
    "sqlContext": "sqlContext: _SqlContext",
    "dbutils": "dbutils: _DBUtils",
    "display": "def display(*objs: Any, **kwargs: Any) -> None: ...",
    "displayHTML": "def displayHTML(html: str) -> None: ...",
    "getArgument": "def getArgument(name: str, optional: str | None = None) -> str | None: ...",
    "sql": "def sql(sqlQuery: str, args: dict[str, Any] | list[Any] | None = None, **kwargs: Any) -> DataFrame: ...",
    "table": "def table(tableName: str) -> DataFrame: ...",
    "udf": "udf = _pyspark_udf",
    "notebookutils": "notebookutils: _NotebookUtilsModule",
    "mssparkutils": "mssparkutils: _NotebookUtilsModule",
}

HEADER = '''\
# The names a Databricks notebook has without importing them, for editors (Pyright, Pylance).
# Written by `nbflow stubs`; nbflow runs notebooks with these objects (see nbflow's README).
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.functions import udf as _pyspark_udf

from nbflow.runtime.fabric import NotebookUtilsModule as _NotebookUtilsModule
from nbflow.runtime.lakehouse import NoSparkContext as _NoSparkContext
from nbflow.runtime.lakehouse import SqlContext as _SqlContext
from nbflow.runtime.session import DBUtils as _DBUtils

'''


def stub_text() -> str:
    return HEADER + "\n".join(DECLARATIONS.values()) + "\n"


def write_stubs(folder: Path) -> Path:
    """Write the stub file into ``folder``; the file."""
    target = folder / STUB_NAME
    target.write_text(stub_text(), encoding="utf-8")
    return target
