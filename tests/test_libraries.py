"""Git folders and notebook-scoped libraries in real kernels: sys.path and the working directory
of a notebook in a git repository (and of its children and includes), %pip into the run's own
environment (never nbflow's), %environment specs, and pip's failures in one line."""

from __future__ import annotations

import base64
import hashlib
import json
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import NOTEBOOKS, exit_json, run
from .conftest import source_notebook as notebook


def wheel(folder: Path, name: str = "tinypkg", version: str = "1.0", value: int = 42) -> Path:
    """A real, minimal pure-Python wheel made here (no build backend, no index, no network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: nbflow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return target


def nbflow_site_packages() -> dict[str, float]:
    """nbflow's own site-packages, entry by entry with its modification time."""
    root = Path(sysconfig.get_path("purelib"))
    return {p.name: p.stat().st_mtime for p in root.iterdir()}


@pytest.mark.kernel
def test_git_folder_puts_the_notebook_folder_and_repo_root_on_sys_path(project: Path) -> None:
    # databricks/notebook-best-practices' layout: notebooks/ imports covid_analysis/ at the repo root.
    repo = project / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "covid_analysis").mkdir()
    (repo / "covid_analysis" / "__init__.py").write_text("")
    (repo / "covid_analysis" / "transforms.py").write_text("def filter_country(rows):\n    return 'filtered'\n")
    (repo / "notebooks" / "helpers.py").parent.mkdir(parents=True)
    (repo / "notebooks" / "helpers.py").write_text("NAME = 'beside the notebook'\n")
    notebook(repo / "jobs" / "child.py", """
        import json, os, sys
        from covid_analysis.transforms import filter_country
        dbutils.notebook.exit(json.dumps({"cwd": os.getcwd(), "path": sys.path[:2], "f": filter_country([])}))
    """)
    notebook(repo / "lib" / "include.py", """
        import os, sys
        included = {"cwd": os.getcwd(), "path": sys.path[:2]}
    """)
    nb = notebook(repo / "notebooks" / "covid_eda_modular.py", """
        from covid_analysis.transforms import *
        from helpers import NAME
    """, """
        %run ../lib/include
    """, """
        import json, os, sys
        dbutils.notebook.exit(json.dumps({
            "cwd": os.getcwd(), "path": sys.path[:2], "f": filter_country([]), "name": NAME,
            "included": included, "child": json.loads(dbutils.notebook.run("../jobs/child", 60)),
        }))
    """)
    outcome = exit_json(run(nb))
    folder = str(repo / "notebooks")
    assert outcome["cwd"] == folder
    assert outcome["path"] == [folder, str(repo)]
    assert outcome["f"] == "filtered" and outcome["name"] == "beside the notebook"
    # %run runs the other notebook's code in this one's process: cwd and sys.path are the caller's.
    assert outcome["included"] == {"cwd": folder, "path": [folder, str(repo)]}
    assert outcome["child"] == {"cwd": str(repo / "jobs"), "path": [str(repo / "jobs"), str(repo)],
                                "f": "filtered"}


@pytest.mark.kernel
def test_a_notebook_outside_any_repository_has_only_its_folder(project: Path) -> None:
    nb = notebook(project / "plain" / "nb.py", """
        import json, os, sys
        dbutils.notebook.exit(json.dumps({"cwd": os.getcwd(), "path": sys.path[:2]}))
    """)
    outcome = exit_json(run(nb))
    assert outcome["cwd"] == str(project / "plain")
    assert outcome["path"][0] == str(project / "plain")
    assert outcome["path"][1] != str(project)  # the project is no git repository: nothing more


@pytest.mark.kernel
def test_pip_installs_into_the_runs_environment_seen_by_children_and_restarts(project: Path) -> None:
    folder = project / "nbs"
    wheel(folder / "wheels")
    wheel(folder / "wheels", "shpkg", "1.0", 3)
    before = nbflow_site_packages()
    notebook(folder / "child.py", """
        import tinypkg
        dbutils.notebook.exit(str(tinypkg.VALUE))
    """)
    nb = notebook(folder / "uses_pip.py", """
        %pip install --no-index ./wheels/tinypkg-1.0-py3-none-any.whl
    """, """
        %sh pip install --no-index ./wheels/shpkg-1.0-py3-none-any.whl
    """, """
        import importlib.util, json, subprocess, sys
        import shpkg, tinypkg
        from IPython.utils.capture import capture_output
        with capture_output() as listed:
            get_ipython().run_line_magic("pip", "list")
        shell = subprocess.run(["python", "-c", "import tinypkg, sys; print(tinypkg.VALUE, sys.prefix)"],
                               capture_output=True, text=True)
        import sysconfig
        env_at = next(i for i, p in enumerate(sys.path) if "/.nbflow/python/" in p)
        order = [sys.path.index(sysconfig.get_path("stdlib")), env_at, sys.path.index(sysconfig.get_path("purelib"))]
        first = {"value": tinypkg.VALUE, "file": tinypkg.__file__, "listed": "tinypkg" in listed.stdout,
                 "sh_pip": shpkg.__file__, "order": order,
                 "sh": shell.stdout.split(), "child": dbutils.notebook.run("./child", 60)}
        dbutils.jobs.taskValues.set("first", first)
    """, """
        dbutils.library.restartPython()
    """, """
        import json, importlib.util
        import tinypkg
        after_restart = tinypkg.VALUE
    """, """
        %pip uninstall tinypkg
    """, """
        import importlib, importlib.machinery
        importlib.invalidate_caches()
        gone = importlib.machinery.PathFinder.find_spec("tinypkg") is None
        dbutils.notebook.exit(json.dumps({"after_restart": after_restart, "after_uninstall": gone}))
    """)
    result = run(nb, run_id="r1", context={"job_task_values": {}})
    outcome = exit_json(result)
    first = result.task_values["first"]
    env_root = project / ".nbflow" / "python"
    assert first["value"] == 42 and first["listed"] is True and first["child"] == "42"
    assert first["file"].startswith(str(env_root))
    assert first["sh_pip"].startswith(str(env_root))  # %sh pip: the run's environment too
    assert first["order"] == sorted(first["order"])  # after the standard library, before nbflow's packages
    assert first["sh"][0] == "42" and first["sh"][1].startswith(str(env_root))  # %sh python: the run's env
    assert outcome == {"after_restart": 42, "after_uninstall": True}
    assert nbflow_site_packages() == before  # nbflow's own environment was not written
    assert not list(env_root.iterdir())  # the run's environment went with the run


@pytest.mark.kernel
def test_pip_requirements_file_and_a_package_that_cannot_be_found(project: Path) -> None:
    folder = project / "req"
    wheel(folder / "wheels", "reqpkg", "2.0", 7)
    (folder / "requirements.txt").write_text("--no-index\n--find-links ./wheels\nreqpkg==2.0\n")
    nb = notebook(folder / "nb.py", """
        %pip install -r requirements.txt
    """, """
        import reqpkg
        print("value", reqpkg.VALUE)
    """, """
        %pip install nbflow-no-such-package-xyz --index-url http://127.0.0.1:9/ --retries 0 --timeout 5
    """, """
        print("never")
    """)
    result = run(nb)
    assert result.status == "FAILED"
    assert result.error.cell_index == 2
    assert result.error.ename == "LibraryInstallError"
    message = result.error.evalue
    assert "\n" not in message
    assert "could not install nbflow-no-such-package-xyz" in message
    assert "No matching distribution found" in message and "network" in message
    cells = json.loads(Path(result.output).read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "value 7" in printed and "never" not in printed


@pytest.mark.kernel
def test_environment_cell_installs_its_dependencies_before_the_first_cell(project: Path) -> None:
    folder = project / "serverless"
    wheel(folder, "envpkg", "1.0", 5)
    wheel(folder, "basepkg", "1.0", 1)
    (folder / "base.yaml").write_text('environment_version: "2"\ndependencies:\n  - ./basepkg-1.0-py3-none-any.whl\n')
    nb = notebook(folder / "nb.py", """
        import basepkg, envpkg
        value = envpkg.VALUE + basepkg.VALUE
    """, """
        dbutils.notebook.exit(str(value))
    """, """
        %environment
        "client": "1"
        "dependencies": ["./envpkg-1.0-py3-none-any.whl"]
        "base_environment": "./base.yaml"
    """)
    assert exit_json(run(nb)) == 6
    # The %environment cell itself ran too (after the rest, here): the spec was already installed.
    plain = notebook(folder / "ui_only.py", """
        dbutils.notebook.exit("ok")
    """, """
        %environment
        "client": "1"
        "base_environment": ""
    """)
    assert run(plain).exit_value == "ok"
    assert not (project / ".nbflow" / "python").exists() or not list((project / ".nbflow" / "python").iterdir())


@pytest.mark.kernel
def test_ipynb_environment_metadata_and_a_missing_dependency(project: Path, monkeypatch: Any) -> None:
    import nbformat

    monkeypatch.setenv("PIP_RETRIES", "0")  # a requirements line cannot say --retries

    folder = project / "export"
    wheel(folder, "metapkg", "1.0", 9)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import metapkg\ndbutils.notebook.exit(str(metapkg.VALUE))")]
    nb.metadata["application/vnd.databricks.v1+notebook"] = {
        "language": "python", "notebookName": "export",
        "environmentMetadata": {"base_environment": "", "environment_version": "2",
                                "dependencies": ["./metapkg-1.0-py3-none-any.whl"]},
    }
    path = folder / "export.ipynb"
    nbformat.write(nb, path)
    assert run(path).exit_value == "9"
    nb.metadata["application/vnd.databricks.v1+notebook"]["environmentMetadata"]["dependencies"] = [
        "--index-url http://127.0.0.1:9/", "nbflow-no-such-package-xyz"]
    nbformat.write(nb, path)
    result = run(path)
    assert result.status == "FAILED" and result.error.cell_index is None
    assert "nbflow-no-such-package-xyz" in result.error.evalue and "network" in result.error.evalue



@pytest.mark.kernel
def test_mlflow_logs_to_the_project_and_registers_unity_catalog_models_locally(project: Path) -> None:
    import pytest

    mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra nbflow[ml]")
    nb = notebook(project / "train.py", """
        import json, os
        import mlflow
        from mlflow import MlflowClient
        mlflow.set_tracking_uri("databricks")  # what real notebooks write: the local store here
        experiment = mlflow.set_experiment("/Users/someone@example.com/churn")

        class Doubler(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return [2 * x for x in model_input]

        with mlflow.start_run() as run:
            mlflow.log_param("depth", 3)
            mlflow.log_metric("auc", 0.91)
            logged = mlflow.pyfunc.log_model(name="model", python_model=Doubler())
        mlflow.set_registry_uri("databricks-uc")
        version = mlflow.register_model(logged.model_uri, "main.default.churn")
        MlflowClient().set_registered_model_alias("main.default.churn", "champion", version.version)
        loaded = mlflow.pyfunc.load_model("models:/main.default.churn@champion")
        dbutils.notebook.exit(json.dumps({
            "uri": os.environ["MLFLOW_TRACKING_URI"], "run": run.info.run_id,
            "version": version.version, "predicted": list(loaded.predict([1, 2])),
        }))
    """)
    outcome = exit_json(run(nb))
    store = project / ".nbflow" / "mlflow"
    assert outcome["uri"] == store.as_uri()
    assert str(outcome["version"]) == "1" and outcome["predicted"] == [2, 4]
    # The store is MLflow's own: a client outside the kernel (as `mlflow ui` would) reads it.
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=store.as_uri(), registry_uri=store.as_uri())
    experiment = client.get_experiment_by_name("/Users/someone@example.com/churn")
    assert experiment is not None
    logged_run = client.get_run(outcome["run"])
    assert logged_run.data.params == {"depth": "3"} and logged_run.data.metrics == {"auc": 0.91}
    assert str(client.get_model_version_by_alias("main.default.churn", "champion").version) == "1"
    # MLflow's "is this a Databricks cluster?" at start_run did not start the local Spark cluster.
    from nbflow import project as paths

    assert not paths.cluster_state_file(project).exists()


def test_environment_specs_are_read_from_cells_and_metadata_and_bad_ones_refused() -> None:
    import pytest

    from nbflow.errors import NotebookFormatError
    from nbflow.notebooks import DATABRICKS_NOTEBOOK, environment_specs, parse_source

    ui_only = parse_source('# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\n'
                           '# MAGIC %environment\n# MAGIC "client": "1"\n# MAGIC "base_environment": ""\n')
    assert environment_specs(ui_only) == []  # what the UI writes installs nothing
    spec = parse_source('# Databricks notebook source\n# MAGIC %environment\n# MAGIC "client": "1"\n'
                        '# MAGIC "dependencies": ["a==1", "-r /Workspace/req.txt"]\n')
    spec.metadata[DATABRICKS_NOTEBOOK] = {"environmentMetadata": {"base_environment": "/Workspace/env.yaml"}}
    assert environment_specs(spec) == [{"base_environment": "/Workspace/env.yaml"},
                                       {"client": "1", "dependencies": ["a==1", "-r /Workspace/req.txt"]}]
    bad = parse_source('# Databricks notebook source\n# MAGIC %environment\n# MAGIC "dependencies": 5\n')
    with pytest.raises(NotebookFormatError, match='"dependencies" must be a list'):
        environment_specs(bad, "nb.py")


@pytest.mark.kernel
def test_notebook_runs_in_its_own_folder() -> None:
    assert run("sub/cwd.py").exit_value == str((NOTEBOOKS / "sub").resolve())
