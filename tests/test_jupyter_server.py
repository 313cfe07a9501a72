"""Databricks source notebooks through a real Jupyter server started by ``nbflow lab``: listed and
opened as notebooks, saved back unchanged byte for byte, an edited cell saved as that cell's lines
only; the nbflow kernel is the server's default; the server ends with ``nbflow lab``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import cli
from .lab_process import running_lab

pytestmark = pytest.mark.serve

SQLNB = Path(__file__).parent / "notebooks" / "sqlnb"

TOKEN = "nbflow-test-token"

PY = """# Databricks notebook source
# DBTITLE 1,Setup
dbutils.widgets.text("n", "3")

# COMMAND ----------

# MAGIC %md
# MAGIC # Totals
# MAGIC Per region.

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT 1 AS one


# COMMAND ----------

total = int(dbutils.widgets.get("n")) * 2
"""

SQL = """-- Databricks notebook source
SELECT 1 AS one

-- COMMAND ----------

-- MAGIC %python
-- MAGIC print("python in a SQL notebook")
"""


class Lab:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> Any:
        response = requests.request(method, f"{self.url}/api/{path}", json=body, timeout=30,
                                    params={"token": TOKEN, **params})
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json()


@pytest.fixture
def lab(project: Path) -> Iterator[Lab]:
    (project / "etl.py").write_text(PY)
    (project / "report.sql").write_text(SQL)
    (project / "script.py").write_text("print('a plain script')\n")
    with running_lab(project, TOKEN) as url:
        yield Lab(url)


def test_source_notebooks_open_as_notebooks_and_save_back_unchanged(lab: Lab, project: Path) -> None:
    listing = {entry["name"]: entry["type"] for entry in lab.api("GET", "contents")["content"]}
    assert listing["etl.py"] == "notebook" and listing["report.sql"] == "notebook"
    assert listing["script.py"] == "file"  # a plain script stays a file

    model = lab.api("GET", "contents/etl.py")
    nb = model["content"]
    assert model["type"] == "notebook" and nb["metadata"]["kernelspec"]["name"] == "nbflow"
    kinds = [(c["cell_type"], c["source"].splitlines()[0]) for c in nb["cells"]]
    assert kinds == [("code", 'dbutils.widgets.text("n", "3")'), ("markdown", "# Totals"),
                     ("code", "%sql"), ("code", 'total = int(dbutils.widgets.get("n")) * 2')]
    assert nb["cells"][0]["metadata"]["title"] == "Setup"

    before = (project / "etl.py").read_bytes()
    lab.api("PUT", "contents/etl.py", {"type": "notebook", "format": "json", "content": nb})
    assert (project / "etl.py").read_bytes() == before  # nothing changed: not a byte

    nb["cells"][3]["source"] += "\nprint(total)"
    saved = lab.api("PUT", "contents/etl.py", {"type": "notebook", "format": "json", "content": nb})
    assert saved["type"] == "notebook"
    assert (project / "etl.py").read_text() == PY.replace(
        'total = int(dbutils.widgets.get("n")) * 2\n', 'total = int(dbutils.widgets.get("n")) * 2\nprint(total)\n')

    nb["cells"].insert(1, {"cell_type": "code", "source": "%sql\nSELECT 2", "metadata": {}, "outputs": [],
                           "execution_count": None, "id": "new1"})
    lab.api("PUT", "contents/etl.py", {"type": "notebook", "format": "json", "content": nb})
    text = (project / "etl.py").read_text()
    assert "# COMMAND ----------\n\n# MAGIC %sql\n# MAGIC SELECT 2\n\n# COMMAND ----------" in text
    assert text.startswith(PY.split("# COMMAND")[0])  # the cells around it as they were


def test_a_sql_notebook_keeps_sql_as_its_own_language(lab: Lab, project: Path) -> None:
    nb = lab.api("GET", "contents/report.sql")["content"]
    assert [c["source"] for c in nb["cells"]] == ["%sql\nSELECT 1 AS one", '%python\nprint("python in a SQL notebook")']
    before = (project / "report.sql").read_bytes()
    lab.api("PUT", "contents/report.sql", {"type": "notebook", "format": "json", "content": nb})
    assert (project / "report.sql").read_bytes() == before
    nb["cells"].append({"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [],
                        "execution_count": None, "id": "py1"})
    nb["cells"][0]["source"] = "%sql\nSELECT 2 AS two"
    lab.api("PUT", "contents/report.sql", {"type": "notebook", "format": "json", "content": nb})
    assert (project / "report.sql").read_text() == SQL.replace("SELECT 1 AS one", "SELECT 2 AS two") + (
        "\n-- COMMAND ----------\n\n-- MAGIC %python\n-- MAGIC x = 1\n")


def test_the_lab_defaults_to_the_nbflow_kernel_and_edits_files_as_files(lab: Lab, project: Path) -> None:
    specs = lab.api("GET", "kernelspecs")
    assert specs["default"] == "nbflow" and "Databricks" in specs["kernelspecs"]["nbflow"]["spec"]["display_name"]
    assert not (Path.home() / ".local/share/jupyter/kernels/nbflow-lab").exists()
    as_file = lab.api("GET", "contents/etl.py", type="file", format="text")
    assert as_file["type"] == "file" and as_file["content"] == PY  # "Open With > Editor" still works
    lab.api("PUT", "contents/notes.ipynb", {"type": "notebook", "format": "json", "content": {
        "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}})
    assert json.loads((project / "notes.ipynb").read_text())["nbformat"] == 4  # .ipynb as Jupyter saves it


def test_the_lab_serves_nbflows_jupyterlab_extension(lab: Lab) -> None:
    page = requests.get(f"{lab.url}/lab", params={"token": TOKEN}, timeout=30)
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  page.text, re.S).group(1))  # type: ignore[union-attr]
    ours = [e for e in config["federated_extensions"] if e["name"] == "nbflow-lab"]
    assert ours, "nbflow lab did not load nbflow's JupyterLab extension (make builds it; needs npm)"
    entry = requests.get(f"{lab.url}/lab/extensions/nbflow-lab/{ours[0]['load']}", timeout=30)
    assert entry.ok and "nbflow-lab" in entry.text


@pytest.mark.kernel  # nbflow run of the saved notebook
def test_widget_values_set_in_the_lab_are_saved_with_an_ipynb_and_used_by_nbflow_run(lab: Lab,
                                                                                     project: Path) -> None:
    notebook = project / "tuned.ipynb"
    # What the kernel's widget panel kept when the user set a value (tests/test_jupyter_kernel.py).
    values = project / ".nbflow/jupyter/widget_values.json"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text(json.dumps({str(notebook.resolve()): {"n": "12"}}))
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "id": "c1",
            "source": 'dbutils.widgets.text("n", "3")\ndbutils.notebook.exit(dbutils.widgets.get("n"))'}
    lab.api("PUT", "contents/tuned.ipynb", {"type": "notebook", "format": "json", "content": {
        "cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}})
    assert json.loads(notebook.read_text())["metadata"]["nbflow_widgets"] == {"n": "12"}
    done = cli("run", str(notebook), "--json")
    assert done.returncode == 0, done.stderr
    [task] = json.loads(done.stdout)["tasks"]
    assert task["exit_value"] == "12"
    done = cli("run", str(notebook), "-p", "n=5", "--json")  # a parameter still wins
    assert json.loads(done.stdout)["tasks"][0]["exit_value"] == "5", done.stderr


def test_a_databricks_export_opens_with_its_sql_cells_and_widgets_and_saves_back_as_exported(
        lab: Lab, project: Path) -> None:
    export = json.loads((SQLNB / "export_sql.ipynb").read_text())
    notebook = project / "export.ipynb"
    notebook.write_text(json.dumps(export))
    opened = lab.api("GET", "contents/export.ipynb")["content"]
    cells = [_text(c["source"]) for c in opened["cells"]]
    # As nbflow run reads it: a first cell declares the widgets the export keeps, and a cell of
    # the notebook's language (SQL) without a magic is a %sql cell.
    assert opened["cells"][0]["metadata"]["tags"] == ["nbflow-widgets"]
    assert "dbutils.widgets.text('region', 'north', None)" in cells[0]
    assert cells[2] == "%sql\nSELECT :region AS region, '${unit}' AS unit"
    assert cells[3].startswith("%python\n")  # a cell with its own magic is left as it is
    # The user set region in the widget panel; the notebook is saved as the front end sends it.
    values = project / ".nbflow/jupyter/widget_values.json"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text(json.dumps({str(notebook.resolve()): {"region": "south"}}))
    lab.api("PUT", "contents/export.ipynb", {"type": "notebook", "format": "json", "content": opened})
    saved = json.loads(notebook.read_text())
    assert [_text(c["source"]) for c in saved["cells"]] == [_text(c["source"]) for c in export["cells"]]
    assert all("nbflow" not in c["metadata"] for c in saved["cells"])
    widgets = saved["metadata"]["application/vnd.databricks.v1+notebook"]["widgets"]
    assert widgets["region"]["currentValue"] == "south"  # what a workspace shows after an import
    assert widgets["unit"] == export["metadata"]["application/vnd.databricks.v1+notebook"]["widgets"]["unit"]


def _text(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)
