"""Reading Databricks source notebooks and finding notebooks by workspace-style paths."""

from __future__ import annotations

from pathlib import Path

import nbformat
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


EXPORTED = (
    "# Databricks notebook source\n"
    "# DBTITLE 1, Load\nx = 1\n\n\n"   # two blank lines and a spaced title: kept as written
    "# COMMAND ----------\n\n"
    "# MAGIC %md-sandbox\n# MAGIC <b>hi</b>\n\n"
    "# COMMAND ----------\n\n"
    "y = x + 1\n"
    "# COMMAND ----------\n\n"   # an empty cell: kept where it is
)


def test_an_unchanged_notebook_is_written_back_byte_for_byte() -> None:
    from nbflow.source_writer import source_text

    nb = parse_source(EXPORTED)
    assert source_text(nb, "python", EXPORTED) == EXPORTED


def test_an_edited_cell_changes_only_its_own_lines() -> None:
    from nbflow.source_writer import source_text

    nb = parse_source(EXPORTED)
    nb.cells[2].source = "y = x + 2"
    assert source_text(nb, "python", EXPORTED) == EXPORTED.replace("y = x + 1", "y = x + 2")
    nb = parse_source(EXPORTED)
    del nb.cells[1]  # a deleted cell goes with its separator; the others stay as written
    assert source_text(nb, "python", EXPORTED) == (
        "# Databricks notebook source\n# DBTITLE 1, Load\nx = 1\n\n\n# COMMAND ----------\n\ny = x + 1\n"
        "# COMMAND ----------\n\n")


def test_a_notebook_written_anew_reads_back_the_same() -> None:
    from nbflow.source_writer import source_text, to_source

    nb = parse_source(EXPORTED)
    again = parse_source(to_source(nb))
    assert [(c.cell_type, c.source, c.metadata.get("title")) for c in again.cells] == [
        (c.cell_type, c.source, c.metadata.get("title")) for c in nb.cells]
    sql = parse_source("-- Databricks notebook source\nSELECT 1\n", language="sql")
    sql.cells.append(nbformat.v4.new_code_cell("print(1)"))
    assert source_text(sql, "sql") == (
        "-- Databricks notebook source\nSELECT 1\n\n-- COMMAND ----------\n\n-- MAGIC %python\n-- MAGIC print(1)\n")
