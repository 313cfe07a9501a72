"""Where a project keeps its things: processed runs, DBFS, secrets, cluster state.

The project folder is ``NBFLOW_PROJECT_DIR``, else the current directory. Both the runner and
the papermill engine (``papermill --engine nbflow``) resolve paths here, so the two ways of
running a notebook see the same DBFS root and secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".nbflow"


def project_dir() -> Path:
    return Path(os.environ.get("NBFLOW_PROJECT_DIR") or os.getcwd()).resolve()


def dbfs_root(project: Path) -> Path:
    return Path(os.environ.get("NBFLOW_DBFS_ROOT") or project / STATE_DIR / "dbfs").resolve()


def volumes_root(project: Path) -> Path:
    """What a notebook calls ``/Volumes``: the volume ``c.s.v`` is the folder ``c/s/v`` here."""
    return (project / STATE_DIR / "volumes").resolve()


def workspace_root(project: Path) -> Path:
    """What a notebook calls ``/Workspace``: the tree of the project's local workspace (``nbflow
    serve`` keeps its imported notebooks and files there, by workspace path, beside its own state
    in ``.nbflow/workspace``), so a notebook sees the workspace's files at ``/Workspace/...`` as on
    Databricks, and cannot reach the server's state through it."""
    return (project / STATE_DIR / "workspace" / "tree").resolve()


def secrets_file(project: Path) -> Path | None:
    named = os.environ.get("NBFLOW_SECRETS_FILE")
    if named:
        return Path(named).resolve()
    for name in ("secrets.yaml", "secrets.yml", "secrets.json"):
        candidate = project / STATE_DIR / name
        if candidate.is_file():
            return candidate
    return None


def python_envs_root(project: Path) -> Path:
    """Where runs keep their notebook-scoped Python environments (``%pip install``), one folder a run."""
    return (project / STATE_DIR / "python").resolve()
