"""The project's layout: every path under the project folder is spelled in nbflow.project alone."""

from __future__ import annotations

import ast
from pathlib import Path

from nbflow import project as paths

PACKAGE = Path(paths.__file__).parent


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants (prose may name a path; code may not)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_module_but_the_project_module_spells_a_project_path() -> None:
    spelled = []
    for source in sorted(PACKAGE.rglob("*.py")):
        if source == Path(paths.__file__):
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and (node.value in (paths.STATE_DIR, paths.PROCESSED) or node.value.startswith(".nbflow/"))):
                spelled.append(f"{source.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert spelled == []


def test_the_layout_is_the_documented_one(tmp_path: Path) -> None:
    project = tmp_path.resolve()
    state = project / ".nbflow"
    assert paths.processed_dir(project) == project / "processed"
    assert paths.catalog_file(project) == state / "catalog" / "tables.json"
    assert paths.volumes_root(project) == state / "volumes"
    assert paths.warehouse_dir(project) == state / "warehouse"
    assert paths.cluster_state_file(project) == state / "cluster" / "state.json"
    assert paths.cluster_token_file(project) == state / "cluster" / "token"
    assert paths.cluster_log_file(project) == state / "cluster" / "server.log"
    assert paths.project_of_cluster_log(paths.cluster_log_file(project)) == project
    assert paths.workspace_root(project) == state / "workspace" / "tree"
    assert paths.deployments_dir(project) == state / "remote"
    assert paths.mlflow_dir(project) == state / "mlflow"
    assert paths.sandbox_dir(project) == state / "sandbox"
