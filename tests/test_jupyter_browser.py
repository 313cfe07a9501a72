"""A real browser in JupyterLab started by ``nbflow lab``: Debian's Chromium, headless, driven by
Playwright, opens a notebook, which gets the nbflow kernel by default, runs its cells, and shows
the widget panel and the table of ``display(spark.range(3))`` as a user sees them. The notebook is a
Databricks source ``.py``, opened by a double-click in the file browser (nbflow's JupyterLab
extension), and saved back unchanged.

``NBFLOW_SCREENSHOT=docs/jupyterlab.png`` keeps the screenshot (the README shows it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from nbflow.jupyter.lab import LAB_EXTENSION_NAME, LAB_EXTENSIONS

from .lab_process import running_lab

pytestmark = [pytest.mark.browser, pytest.mark.serve, pytest.mark.kernel, pytest.mark.spark]

CHROMIUM = os.environ.get("NBFLOW_CHROMIUM", "/usr/lib/chromium/chromium")
# Without the network-quieting flags Chromium keeps calling home, refused on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TOKEN = "nbflow-browser-test"

# A Databricks source notebook, as a workspace export writes it: opened from the file browser.
NOTEBOOK = """# Databricks notebook source
dbutils.widgets.dropdown("region", "EU", ["EU", "US"], "Region")
dbutils.widgets.text("rows", "3", "Rows")

# COMMAND ----------

display(spark.range(int(dbutils.widgets.get("rows"))).selectExpr("id", "id * 10 AS tenfold"))
"""


def test_a_source_notebook_opens_from_the_file_browser_and_shows_widgets_and_a_spark_table(
        project: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set NBFLOW_CHROMIUM")
    built = LAB_EXTENSIONS / LAB_EXTENSION_NAME / "package.json"
    assert built.is_file(), f"nbflow's JupyterLab extension is not built ({built}): run make (needs npm)"
    from playwright.sync_api import expect, sync_playwright

    source = project / "explore.py"
    source.write_text(NOTEBOOK)
    (project / "helpers.py").write_text("x = 1\n")  # a plain module: still the text editor
    shot = tmp_path / "jupyterlab.png"
    # A Jupyter of its own: no build check on page load (seconds each), no news pop-up.
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"buildCheck": False, "buildAvailable": False}))
    settings = tmp_path / "lab-settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {"JUPYTER_CONFIG_DIR": str(config),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with running_lab(project, TOKEN, env, ["--LabApp.extension_manager=readonly"]) as url, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 760})
        try:
            browser.set_default_timeout(60_000)
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.goto(f"{url}/lab?reset&token={TOKEN}", wait_until="domcontentloaded")
            # A double-click in the file browser: the notebook editor for the source notebook (nbflow's
            # JupyterLab extension), the text editor for the plain module.
            listing = page.locator(".jp-DirListing-content")
            listing.locator(".jp-DirListing-item", has_text="helpers.py").dblclick(timeout=90_000)
            expect(page.locator(".jp-FileEditor:visible")).to_have_count(1)
            listing.locator(".jp-DirListing-item", has_text="explore.py").dblclick()
            panel = page.locator(".jp-NotebookPanel:visible")
            expect(panel.locator(".jp-Notebook .jp-CodeCell")).to_have_count(2, timeout=90_000)
            # The lab's default kernel, idle: the status bar says so once it really is.
            expect(page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text=re.compile(r"\|"))
                   ).to_have_text(re.compile(r"^nbflow: Databricks runtime .* \| Idle$"), timeout=90_000)
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator("#jp-mainmenu-run .lm-Menu-item[data-command='runmenu:run-all']").click()
            cells = panel.locator(".jp-Notebook .jp-CodeCell")
            # One widget panel, drawn by ipywidgets: a dropdown and a text box.
            expect(cells.nth(0).locator(".widget-dropdown select")).to_have_value("EU", timeout=90_000)
            expect(cells.nth(0).locator(".widget-text input")).to_have_value("3")
            # The Spark table, as HTML: its schema, its rows, and how many.
            table = cells.nth(1).locator(".jp-OutputArea-output table")
            expect(table).to_have_count(1, timeout=120_000)
            expect(table.locator("tbody tr")).to_have_count(3)
            expect(table.locator("tbody tr").nth(2).locator("td")).to_have_text(["2", "20"])
            output = cells.nth(1).locator(".jp-OutputArea-output")
            expect(output).to_contain_text("id: bigint, tenfold: bigint")
            expect(output).to_contain_text("3 rows")
            page.screenshot(path=str(shot))
            # Saved, it stays the source file it was: nothing changed, so not a byte.
            dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty", has_text="explore.py")
            expect(dirty).to_have_count(1)  # outputs and execution counts changed the model
            panel.locator(".jp-Notebook").click()
            page.keyboard.press("Control+s")
            expect(dirty).to_have_count(0)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert source.read_text() == NOTEBOOK
    keep = os.environ.get("NBFLOW_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
