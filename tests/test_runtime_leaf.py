"""The runtime is a leaf: what a kernel imports brings in none of nbflow's machinery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nbflow import kernel_protocol
from nbflow.runtime.context import RunContext

from .conftest import NOTEBOOKS

# Never imported in a kernel: the scheduler, plans, the worker pool, the CLI, the engine and what
# they stand on (runMultiple and dbutils.notebook.run hand their work to processes of their own).
ABSENT = ("nbflow.scheduler", "nbflow.plan", "nbflow.pool", "nbflow.cli", "nbflow.plan_runner", "nbflow.compare",
          "nbflow.serve", "nbflow.remote", "nbflow.engine", "nbflow.runner", "nbflow.run_multiple",
          "nbflow.documents", "papermill", "nbclient", "click", "pydantic", "yaml")

# A fresh interpreter does what a kernel does: an IPython shell, then the engine's own code (the
# preload of a warm kernel, the bootstrap, a cell using the runtime, the end state).
KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
for code in sys.argv[1:]:
    result = shell.run_cell(code)
    result.raise_error()
absent = json.loads(sys.stdin.read())
print(json.dumps(sorted(m for m in sys.modules if any(m == a or m.startswith(a + ".") for a in absent))))
"""

CELL = f"""
dbutils.widgets.text("x", "1")
assert notebookutils.notebook.validateDAG({{"activities": [{{"name": "a", "path": {str(NOTEBOOKS / "child")!r}}}]}})
display("shown")
"""


def test_a_kernel_imports_none_of_nbflows_machinery(project: Path) -> None:
    context = RunContext(notebook_path=str(NOTEBOOKS / "caller.py"), project_dir=str(project),
                         dbfs_root=str(project / ".nbflow" / "dbfs"), python=sys.executable)
    codes = [
        kernel_protocol.runtime_call("preload", str(project), "auto", False),
        kernel_protocol.runtime_call("install", context.to_json()),
        CELL,
        kernel_protocol.runtime_call("state_json"),
    ]
    done = subprocess.run([sys.executable, "-c", KERNEL, *codes], input=json.dumps(ABSENT), capture_output=True,
                          text=True, timeout=120, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "shown" in done.stdout  # the cell ran, with the runtime installed
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_importing_the_runtime_package_loads_nothing_else() -> None:
    """The engine and the CLI import nbflow.runtime.context and .secrets: not the kernel's runtime
    (nbflow.project, standard library only, names the project's folders)."""
    code = "import sys, nbflow.runtime.context, nbflow.runtime.secrets; print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = {m for m in eval(done.stdout) if m.startswith("nbflow")}
    assert loaded == {"nbflow", "nbflow.errors", "nbflow.project", "nbflow.runtime", "nbflow.runtime.context",
                      "nbflow.runtime.help", "nbflow.runtime.secrets"}
