"""SQL-language notebooks (``.sql`` sources, SQL cells of Databricks ``.ipynb`` exports), SQL
widgets and variables, and the refusal of Scala and R notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbflow import run_notebook
from nbflow.errors import InputWidgetNotDefined, NotebookFormatError
from nbflow.notebooks import is_source_notebook, parse_source, read_notebook, resolve_notebook
from nbflow.runtime.sql_cells import parameter_markers, replace_get_argument, split_sql, substitute
from nbflow.runtime.sql_text import sql_string
from nbflow.runtime.widgets import WidgetsUtils

from .conftest import NOTEBOOKS, cli

SQLNB = NOTEBOOKS / "sqlnb"

# The shapes real SQL exports have: %md-sandbox, %run, DBTITLE before SQL, comments before the
# SQL, a magic with a comment after it, a leading empty MAGIC line, a comment-only cell, "%md "
# with a trailing space and an empty last cell.
SQL_SOURCE = """-- Databricks notebook source
-- MAGIC %md-sandbox
-- MAGIC
-- MAGIC <div>Bookstore</div>

-- COMMAND ----------

-- MAGIC %run ../Includes/Copy-Datasets

-- COMMAND ----------

-- DBTITLE 1,dimension schema
/*
Manually update the following
*/
declare or replace variable catalog_nm string = 'demo';

-- COMMAND ----------

-- MAGIC
-- MAGIC %python # Arbitrary comment after magic command
-- MAGIC files = dbutils.fs.ls("/")

-- COMMAND ----------

--SELECT * FROM books_csv

-- COMMAND ----------

-- MAGIC %md<SP>
-- MAGIC ## Querying CSV

-- COMMAND ----------


""".replace("<SP>", " ")


def test_sql_source_cells_as_databricks_exports_them() -> None:
    nb = parse_source(SQL_SOURCE, "lesson.sql", "sql")
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        ("markdown", "<div>Bookstore</div>"),
        ("code", "%run ../Includes/Copy-Datasets"),
        ("code", "%sql\n/*\nManually update the following\n*/\n"
                 "declare or replace variable catalog_nm string = 'demo';"),
        ("code", '%python # Arbitrary comment after magic command\nfiles = dbutils.fs.ls("/")'),
        ("code", "%sql\n--SELECT * FROM books_csv"),
        ("markdown", "## Querying CSV"),
    ]
    assert nb.cells[2].metadata["title"] == "dimension schema"


def test_python_source_magic_cell_may_start_with_an_empty_magic_line() -> None:
    nb = parse_source("# Databricks notebook source\n# MAGIC\n# MAGIC %md\n# MAGIC # Platform\n")
    assert [(c.cell_type, c.source) for c in nb.cells] == [("markdown", "# Platform")]


def test_sql_files_are_notebooks_by_header_not_by_extension() -> None:
    assert is_source_notebook(SQLNB / "report.sql")
    assert not is_source_notebook(SQLNB / "plain.sql")
    with pytest.raises(NotebookFormatError, match=r"plain\.sql: a \.sql notebook must start with the line "
                                                  r"'-- Databricks notebook source'.*plain SQL scripts are not"):
        read_notebook(SQLNB / "plain.sql")
    assert resolve_notebook("./report", SQLNB) == (SQLNB / "report.sql").resolve()


@pytest.mark.parametrize(("name", "language"), [("legacy.scala", "a Scala"), ("legacy.r", "an R")])
def test_scala_and_r_notebooks_are_refused_naming_the_language(name: str, language: str) -> None:
    with pytest.raises(NotebookFormatError, match=rf"{name}: {language} notebook: nbflow runs Python and SQL"):
        read_notebook(SQLNB / name)


def test_split_sql_keeps_strings_names_and_nested_comments() -> None:
    text = "select 'a;b', `c;d` /* x; /* y; */ z; */ from t; -- e; f\nselect\"g;\"/*h*/from u;;"
    assert split_sql(text) == ["select 'a;b', `c;d`   from t", 'select"g;" from u']


def test_parameter_markers_outside_strings_casts_and_json_paths() -> None:
    statement = "SELECT :a, x::int, raw:field, ':b', `:c`, (:d) -- :e\n, /* :f */ :a"
    assert parameter_markers(statement) == ["a", "d"]


def test_legacy_substitution_and_get_argument() -> None:
    values = {"table": "sales", "hivevar:n": "3"}
    assert substitute(r"SELECT * FROM ${table} LIMIT ${hivevar:n} -- \${table} ${other}", values.get) == \
        r"SELECT * FROM sales LIMIT 3 -- \${table} ${other}"
    widgets = WidgetsUtils({"who": "O'Brien \\ co"})
    replaced = replace_get_argument("SELECT getArgument(\"who\"), 'getArgument(\"who\")', getargument('x', 'd')",
                                    widgets)
    assert replaced == "SELECT " + sql_string("O'Brien \\ co") + ", 'getArgument(\"who\")', 'd'"
    with pytest.raises(InputWidgetNotDefined):
        replace_get_argument("SELECT getArgument('missing')", widgets)


def test_databricks_ipynb_metadata_declares_widgets_and_marks_sql_cells() -> None:
    nb = read_notebook(SQLNB / "export_sql.ipynb")
    first = nb.cells[0]
    assert first.metadata["tags"] == ["nbflow-widgets"]
    assert "dbutils.widgets.text('region', 'north', None)" in first.source
    assert "dbutils.widgets.dropdown('unit', 'kg', ['kg', 'lb'], None)" in first.source
    assert nb.cells[2].source.startswith("%sql\nSELECT :region")
    assert nb.cells[3].source.startswith("%python\n")  # a cell with its own magic is left alone
    again = read_notebook(SQLNB / "export_sql.ipynb")
    assert len(again.cells) == len(nb.cells)


# -- real kernels -------------------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.spark
def test_sql_notebook_run_with_parameters_reaching_markers_and_substitution(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A value with a quote and a semicolon: bound through :region, it stays a value.
    proc = cli("run", str(SQLNB / "report.sql"), "-p", "region=x'; DROP", "-p", "unit=lb",
               "--output-dir", str(out), "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)["tasks"][0]
    assert json.loads(task["exit_value"]) == [{"region": "x'; DROP", "total": 1, "unit": "lb", "label": "it's; fine"}]
    executed = nbformat.read(out / "report.ipynb", as_version=4)
    assert [c.cell_type for c in executed.cells] == ["markdown", "code", "code", "code"]
    totals = executed.cells[2]
    assert totals.source.startswith("%sql\n") and totals.metadata["title"] == "Totals"
    assert any("text/html" in o.get("data", {}) for o in totals.outputs)  # the last result is displayed


@pytest.mark.kernel
@pytest.mark.spark
def test_sql_notebook_as_a_plan_task_with_plan_parameters() -> None:
    proc = cli("run", str(SQLNB / "plan.yaml"), "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)["tasks"][0]
    assert task["status"] == "SUCCESS"
    assert json.loads(task["exit_value"]) == [{"region": "south", "total": 20, "unit": "lb", "label": "it's; fine"}]


@pytest.mark.kernel
@pytest.mark.spark
def test_create_and_remove_widget_and_set_variables() -> None:
    result = run_notebook(SQLNB / "widgets.sql", {"b": "y"})
    assert result.ok, result.error
    assert json.loads(result.exit_value) == {"gone": True, "b": "y", "c": "p,q", "text": "hello y"}
    assert result.parameters["c"] == {"value": "p,q", "source": "widget default"}
    assert not result.warnings


@pytest.mark.kernel
@pytest.mark.spark
def test_run_includes_a_sql_notebook_and_notebook_run_calls_one() -> None:
    result = run_notebook(SQLNB / "runs_sql.py")
    assert result.ok, result.error
    assert json.loads(result.exit_value) == {
        "included": "hello, nbflow",  # %run's $who argument reached :who; SET greeting reached ${greeting}
        "after": "hello",  # the included notebook's SET variable lives on in the caller's kernel
        "child": [{"region": "south", "total": 20, "unit": "lb", "label": "it's; fine"}],
    }
    assert [c["status"] for c in result.children] == ["SUCCESS"]
    assert result.children[0]["notebook"].endswith("report.sql")


@pytest.mark.kernel
@pytest.mark.spark
def test_an_unbound_marker_fails_naming_it() -> None:
    result = run_notebook(SQLNB / "unbound.sql")
    assert result.status == "FAILED"
    assert result.error is not None and result.error.cell_index == 0
    assert "[UNBOUND_SQL_PARAMETER] Found the unbound parameter: nobody" in result.error.evalue


@pytest.mark.kernel
@pytest.mark.spark
def test_databricks_ipynb_export_widgets_and_cell_languages() -> None:
    result = run_notebook(SQLNB / "export_sql.ipynb", {"region": "east"})
    assert result.ok, result.error
    assert json.loads(result.exit_value) == {"region": "east", "unit": "kg"}
    assert len(result.cells) == 3  # the cell declaring the saved widgets is not one of the notebook's
    assert result.parameters["unit"] == {"value": "kg", "source": "widget default"}
    by_cell = run_notebook(SQLNB / "export_cell_language.ipynb")
    assert by_cell.ok, by_cell.error
    assert by_cell.exit_value == "42"


@pytest.mark.parametrize(("name", "language"), [("legacy.scala", "a Scala"), ("legacy.r", "an R")])
def test_a_whole_scala_or_r_notebook_exits_2_before_any_kernel(tmp_path: Path, name: str, language: str) -> None:
    started = time.monotonic()
    proc = cli("run", str(SQLNB / name), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"{language} notebook" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran: no executed notebook, no kernel
    assert time.monotonic() - started < 60


def test_a_plan_naming_a_scala_notebook_is_invalid(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: p\ntasks:\n  - task_key: s\n    notebook: {SQLNB / 'legacy.scala'}\n")
    proc = cli("validate", str(plan))
    assert proc.returncode == 2
    assert "Scala notebook" in proc.stderr


@pytest.mark.kernel
@pytest.mark.spark
def test_papermill_runs_a_sql_source_notebook(tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(SQLNB / "report.sql"), str(out), "--engine", "nbflow",
         "-p", "region", "south", "--no-progress-bar"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    payload = nbformat.read(out, as_version=4).metadata["nbflow"]
    assert payload["status"] == "SUCCESS"
    assert json.loads(payload["exit_value"])[0]["total"] == 20


@pytest.mark.kernel
@pytest.mark.spark
def test_declare_variable_on_sail_fails_in_one_line_naming_what_works() -> None:
    # Sail (the default engine) has no SQL session variables; the JVM engine parses them itself.
    result = run_notebook(SQLNB / "declare.sql")
    assert result.status == "FAILED"
    assert result.error is not None
    assert result.error.evalue.startswith("DECLARE: the engine has no SQL session variables")
    assert "SET name = value with ${name}" in result.error.evalue
    assert "\n" not in result.error.evalue
