"""The Databricks runtime in Jupyter: the nbflow kernel installed into a prefix and driven through
jupyter_client as a front end drives it, and ``%load_ext nbflow`` in a plain Python kernel."""

from __future__ import annotations

import json
import os
import queue
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from .conftest import cli

pytestmark = pytest.mark.kernel

TABLE_MIME = "application/vnd.nbflow.table+json"


class Front:
    """A front end's view of one kernel: run code, get its reply and what it displayed."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msg_id = self.client.execute(code)
        outputs: list[dict[str, Any]] = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no answer to {code!r}; outputs so far: {outputs}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"type": kind, **msg["content"]})
        reply = self.client.get_shell_msg(timeout=timeout)
        return reply["content"], outputs

    def value(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the kernel."""
        reply, outputs = self.run(f"import json as _j; print(_j.dumps({expression}))")
        assert reply["status"] == "ok", outputs
        return json.loads("".join(o["text"] for o in outputs if o["type"] == "stream"))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


def text(outputs: list[dict[str, Any]]) -> str:
    shown = []
    for out in outputs:
        if out["type"] == "stream":
            shown.append(out["text"])
        elif out["type"] == "error":
            shown.append("\n".join(out["traceback"]))
        elif "data" in out:
            shown.append(out["data"].get("text/plain", ""))
    return "".join(shown)


@pytest.fixture
def workspace(project: Path) -> Path:
    """A project with notebooks in a folder of it, as a user's repository has them."""
    folder = project / "notebooks"
    folder.mkdir()
    (project / ".nbflow").mkdir(exist_ok=True)
    (folder / "helper.py").write_text(
        '# Databricks notebook source\ndbutils.widgets.text("who", "nobody")\n'
        'greeting = "hello " + dbutils.widgets.get("who")\n')
    (folder / "child.py").write_text(
        '# Databricks notebook source\ndbutils.widgets.text("n", "1")\n'
        'dbutils.notebook.exit(str(int(dbutils.widgets.get("n")) * 3))\n')
    return folder


def _start(name: str, folder: Path, specs: KernelSpecManager | None = None, **env: str) -> Front:
    # As Jupyter starts a notebook's kernel: in the notebook's folder, its path in JPY_SESSION_NAME.
    manager = KernelManager(kernel_name=name, **({"kernel_spec_manager": specs} if specs else {}))
    environ = {k: v for k, v in os.environ.items() if k != "NBFLOW_PROJECT_DIR"}
    manager.start_kernel(cwd=str(folder), env={**environ, **env})
    return Front(manager)


@pytest.fixture
def nbflow_kernel(workspace: Path, tmp_path: Path) -> Iterator[Front]:
    prefix = tmp_path / "prefix"
    done = cli("kernel", "install", "--prefix", str(prefix), "--name", "nbflow-test")
    assert done.returncode == 0, done.stderr
    kernel_json = json.loads((prefix / "share/jupyter/kernels/nbflow-test/kernel.json").read_text())
    assert kernel_json["argv"][0] == sys.executable and "Databricks" in kernel_json["display_name"]
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share/jupyter/kernels")])
    front = _start("nbflow-test", workspace, specs, JPY_SESSION_NAME="notebooks/explore.ipynb")
    try:
        yield front
    finally:
        front.close()
    done = cli("kernel", "uninstall", "--prefix", str(prefix), "--name", "nbflow-test")
    assert done.returncode == 0 and not (prefix / "share/jupyter/kernels/nbflow-test").exists(), done.stderr


def test_the_nbflow_kernel_has_the_runtime_for_the_notebooks_project(nbflow_kernel: Front, workspace: Path) -> None:
    front = nbflow_kernel
    context = front.value("{k: getattr(__import__('nbflow.runtime.active', fromlist=['x']).current().context, k) "
                          "for k in ('project_dir', 'notebook_path', 'interactive')}")
    assert context == {"project_dir": str(workspace.parent.resolve()),  # the folder with .nbflow/, not cwd
                       "notebook_path": str((workspace / "explore.ipynb").resolve()), "interactive": True}
    # Widgets with no front end for them: defaults, as nbflow run has them.
    assert front.value('(dbutils.widgets.text("w", "dflt"), dbutils.widgets.get("w"))[1]') == "dflt"
    # %run resolves from the notebook's folder and binds $arguments as widgets.
    reply, outputs = front.run('%run ./helper $who="ann"\nprint(greeting)')
    assert reply["status"] == "ok" and "hello ann" in text(outputs), outputs
    # A child runs in a kernel of its own; its saved notebook is shown.
    reply, outputs = front.run('print(dbutils.notebook.run("./child", 120, {"n": "5"}))')
    assert reply["status"] == "ok", outputs
    shown = [o for o in outputs if o["type"] == "display_data" and "nbflow" in o.get("metadata", {})]
    assert shown and shown[0]["metadata"]["nbflow"]["status"] == "SUCCESS", outputs
    saved = Path(shown[0]["metadata"]["nbflow"]["child"])
    assert saved.is_file() and saved.is_relative_to(workspace.parent / "processed")
    assert "child.ipynb" in shown[0]["data"]["text/html"] and text(outputs).strip().endswith("15")
    # Task values of a notebook run by hand: the debug value.
    assert front.value('dbutils.jobs.taskValues.get("up", "k", default=1, debugValue=7)') == 7
    # Source pasted from a workspace export behaves as its cells.
    reply, outputs = front.run("x = 2\n# COMMAND ----------\n# MAGIC %python\n# MAGIC y = x * 21\n"
                               "# COMMAND ----------\nprint(y)")
    assert reply["status"] == "ok" and text(outputs).strip() == "42", outputs
    # An exit ends the cell with Databricks' message, not a traceback.
    reply, outputs = front.run('dbutils.notebook.exit("bye")\nprint("not reached")')
    assert "Notebook exited: bye" in text(outputs) and "not reached" not in text(outputs)


@pytest.mark.spark
def test_spark_sql_and_display_in_the_nbflow_kernel(nbflow_kernel: Front, workspace: Path) -> None:
    front = nbflow_kernel
    reply, outputs = front.run("display(spark.range(1005).selectExpr('id', 'id * 2 AS twice'))")
    assert reply["status"] == "ok", outputs
    [table] = [o["data"] for o in outputs if o["type"] == "display_data"]
    payload = table[TABLE_MIME]
    assert payload["schema"] == [{"name": "id", "type": "bigint"}, {"name": "twice", "type": "bigint"}]
    assert payload["shown"] == 1000 and payload["more"] is True and payload["rows"][2] == [2, 4]
    assert "showing 1000 of 1000+ rows" in table["text/html"] and "id: bigint" in table["text/html"]
    reply, outputs = front.run("%sql\nCREATE TABLE kept AS SELECT 1 AS one;\nSELECT one + 1 AS two FROM kept")
    assert reply["status"] == "ok", outputs
    assert front.value("_sqldf.collect()[0]['two']") == 2
    assert (workspace.parent / ".nbflow").is_dir()


def test_load_ext_in_a_plain_python_kernel(workspace: Path) -> None:
    front = _start("python3", workspace)
    try:
        reply, outputs = front.run("%load_ext nbflow")
        assert reply["status"] == "ok", outputs
        line = text(outputs)
        assert line.startswith("nbflow: project ") and "cluster" in line and "catalog main" in line, line
        names = "('spark', 'dbutils', 'display', 'sql', 'getArgument')"
        assert front.value(f"[n in globals() for n in {names}]") == [True] * 5
        front.run("%load_ext nbflow")  # a second load changes nothing
        reply, outputs = front.run('%run ./helper $who="bob"\nprint(greeting)')
        assert "hello bob" in text(outputs), outputs
        reply, outputs = front.run("%unload_ext nbflow")
        assert reply["status"] == "ok", outputs
        assert front.value("[n in globals() for n in ('spark', 'dbutils', 'display')]") == [False, False, False]
        # IPython's own %run is back: a Python script, not a notebook include.
        (workspace / "script.py").write_text("ran = 'as a script'\n")
        reply, outputs = front.run("%run script.py\nprint(ran)")
        assert reply["status"] == "ok" and "as a script" in text(outputs), outputs
        reply, outputs = front.run("%load_ext nbflow")  # and it loads again
        assert reply["status"] == "ok" and front.value("'dbutils' in globals()") is True
    finally:
        front.close()


def _set_widget(front: Front, model_id: str, **state: Any) -> None:
    """What a front end sends when the user changes a widget (a text's value, a choice's index)."""
    msg = front.client.session.msg("comm_msg", {"comm_id": model_id, "data": {
        "method": "update", "state": state, "buffer_paths": []}})
    front.client.shell_channel.send(msg)


def test_widgets_are_one_panel_per_cell_and_get_returns_what_the_user_set(nbflow_kernel: Front,
                                                                          workspace: Path) -> None:
    front = nbflow_kernel
    reply, outputs = front.run('dbutils.widgets.text("n", "3", "Rows")\n'
                               'dbutils.widgets.dropdown("env", "dev", ["dev", "prod"])\n'
                               'dbutils.widgets.multiselect("days", "mon", ["mon", "tue", "wed"])')
    assert reply["status"] == "ok", outputs
    panels = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(panels) == 1, outputs  # one panel for the cell, not one per call
    assert front.value('dbutils.widgets.getAll()') == {"n": "3", "env": "dev", "days": "mon"}
    children = front.value("[c.model_id for c in __import__('nbflow.runtime.active', fromlist=['x'])"
                           ".current().dbutils.widgets.panel._box.children]")
    _set_widget(front, children[0], value="12")
    _set_widget(front, children[1], index=1)
    _set_widget(front, children[2], index=[1, 2])
    assert front.value('[dbutils.widgets.get(n) for n in ("n", "env", "days")]') == ["12", "prod", "tue,wed"]
    # Declared again (the cell run again): the user's value stays, as in the workspace.
    reply, outputs = front.run('dbutils.widgets.text("n", "3", "Rows")\nprint(dbutils.widgets.get("n"))')
    assert text(outputs).strip().endswith("12"), outputs
    # %run bindings still win over the panel.
    (workspace / "echo.py").write_text('# Databricks notebook source\ndbutils.widgets.text("n", "0")\n'
                                      'seen = dbutils.widgets.get("n")\n')
    reply, outputs = front.run('%run ./echo $n="7"\nprint(seen)')
    assert text(outputs).strip().endswith("7"), outputs
    # What the user set is kept for the notebook (nbflow lab saves it with an .ipynb).
    kept = json.loads((workspace.parent / ".nbflow/jupyter/widget_values.json").read_text())
    assert kept[str((workspace / "explore.ipynb").resolve())] == {"n": "12", "env": "prod", "days": "tue,wed"}
