"""``nbflow stubs``: the declared names are the runtime's, and every type they name exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nbflow.stubs import DECLARATIONS, STUB_NAME

from .conftest import cli

NAMES = """
import json
from IPython.core.interactiveshell import InteractiveShell
from nbflow.runtime.context import RunContext
from nbflow.runtime.kernel import setup

shell = InteractiveShell.instance()
before = set(shell.user_ns_hidden)
setup(shell, RunContext(project_dir=".", dbfs_root=".nbflow/dbfs"))
print(json.dumps(sorted(set(shell.user_ns_hidden) - before)))
"""


def test_the_stubs_declare_exactly_the_names_the_runtime_gives_a_notebook(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NAMES], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(DECLARATIONS) == json.loads(done.stdout.splitlines()[-1])


def test_nbflow_stubs_writes_a_stub_whose_types_all_resolve(project: Path) -> None:
    done = cli("stubs")
    assert done.returncode == 0, done.stderr
    stub = project / STUB_NAME
    assert str(stub) in done.stdout
    # A stub is Python: run as a module, each annotation and import is looked up for real.
    check = "import sys; ns = {}; exec(open(sys.argv[1]).read(), ns); print(sorted(ns['__annotations__']))"
    ran = subprocess.run([sys.executable, "-c", check, str(stub)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert set(json.loads(ran.stdout.replace("'", '"'))) == {
        n for n, d in DECLARATIONS.items() if d.startswith(f"{n}:")}
    assert (Path(__import__("nbflow").__file__).parent / "py.typed").is_file()
    missing = cli("stubs", str(project / "nowhere"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_an_editor_knows_the_notebooks_names_and_their_types(project: Path) -> None:
    """Pyright (the checker inside Pylance) with the stub: names known, types checked."""
    cli("stubs")
    (project / "nb.py").write_text(
        "# Databricks notebook source\n"
        "rows: int = spark.range(3).count()\n"
        'dbutils.widgets.text("x", "1")\n'
        'value: str = dbutils.widgets.get("x")\n'
        "display(spark.table('t'))\n"
        'wrong: int = dbutils.widgets.get("x")\n'
        "print(undeclared_name)\n")
    # An editable install is not found by static checkers: point Pyright at the sources.
    source_root = Path(__import__("nbflow").__file__).parent.parent
    (project / "pyrightconfig.json").write_text(json.dumps({"extraPaths": [str(source_root)],
                                                            "pythonPath": sys.executable}))
    done = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "nb.py"], cwd=project,
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    found = sorted((d["range"]["start"]["line"] + 1, d["rule"]) for d in report["generalDiagnostics"])
    assert found == [(6, "reportAssignmentType"), (7, "reportUndefinedVariable")], report
