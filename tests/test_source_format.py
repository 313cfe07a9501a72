"""Reading Databricks source notebooks and finding notebooks by workspace-style paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbflow.errors import NotebookFormatError, NotebookNotFound
from nbflow.notebooks import parameters_cell_names, parse_source, read_notebook, resolve_notebook

from .conftest import NOTEBOOKS

SOURCE = """# Databricks notebook source
# MAGIC %md
# MAGIC # Title
# MAGIC
# MAGIC Some text.

# COMMAND ----------

# DBTITLE 1,Load the data
x = 1


y = 2

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT 1

# COMMAND ----------

# MAGIC %run ./other $a="1"

# COMMAND ----------

# MAGIC %sh ls -la

# COMMAND ----------

# MAGIC %pip install requests

# COMMAND ----------

"""


def test_cells_split_on_command_lines_and_blank_cells_dropped() -> None:
    nb = parse_source(SOURCE)
    kinds = [(c.cell_type, c.source) for c in nb.cells]
    assert kinds == [
        ("markdown", "# Title\n\nSome text."),
        ("code", "x = 1\n\n\ny = 2"),
        ("code", "%sql\nSELECT 1"),
        ("code", '%run ./other $a="1"'),
        ("code", "%sh ls -la"),
        ("code", "%pip install requests"),
    ]


def test_dbtitle_becomes_cell_metadata() -> None:
    nb = parse_source(SOURCE)
    assert nb.cells[1].metadata["title"] == "Load the data"
    assert "DBTITLE" not in nb.cells[1].source


def test_magic_cell_with_an_unprefixed_line_is_rejected_with_its_place() -> None:
    with pytest.raises(NotebookFormatError, match=r"cell 2: line 2 of a MAGIC cell"):
        read_notebook(NOTEBOOKS / "malformed.py")


def test_magic_cell_must_start_with_a_magic() -> None:
    with pytest.raises(NotebookFormatError, match="must start with a magic"):
        parse_source("# Databricks notebook source\n# MAGIC hello\n")


def test_plain_python_file_is_not_a_notebook() -> None:
    with pytest.raises(NotebookFormatError, match="Databricks notebook source"):
        read_notebook(NOTEBOOKS / "not_a_notebook.py")


def test_other_extension_is_not_a_notebook(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(NotebookFormatError, match="not a notebook"):
        read_notebook(path)


def test_broken_ipynb_names_the_file() -> None:
    with pytest.raises(NotebookFormatError, match=r"broken\.ipynb: not a valid \.ipynb"):
        read_notebook(NOTEBOOKS / "broken.ipynb")


def test_missing_notebook() -> None:
    with pytest.raises(NotebookNotFound, match=r"nope\.ipynb"):
        read_notebook(NOTEBOOKS / "nope.ipynb")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("./child", "child.py"), ("child", "child.py"), ("child.py", "child.py"), ("./params", "params.ipynb"),
     ("../notebooks/lib/constants", "lib/constants.py")],
)
def test_resolve_with_or_without_extension(reference: str, expected: str) -> None:
    assert resolve_notebook(reference, NOTEBOOKS) == (NOTEBOOKS / expected).resolve()


def test_resolve_absolute_path() -> None:
    absolute = str((NOTEBOOKS / "lib" / "constants").resolve())
    assert resolve_notebook(absolute, Path("/elsewhere")) == (NOTEBOOKS / "lib" / "constants.py").resolve()


def test_resolve_missing_lists_what_was_tried() -> None:
    with pytest.raises(NotebookNotFound, match=r"ghost\.ipynb, .*ghost\.py"):
        resolve_notebook("./ghost", NOTEBOOKS)


def test_parameters_cell_names() -> None:
    assert parameters_cell_names(read_notebook(NOTEBOOKS / "params.ipynb")) == {"n", "label", "rate", "enabled"}
