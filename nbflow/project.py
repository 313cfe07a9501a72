"""Where a project keeps its things: every path under the project folder, defined here once.

The project folder is ``NBFLOW_PROJECT_DIR``, else the current directory. Both the runner and
the papermill engine (``papermill --engine nbflow``) resolve paths here, so the two ways of
running a notebook see the same DBFS root and secrets. The layout::

    processed/<run-id>/        runs' executed notebooks, run.json and report.html
    .nbflow/dbfs/              what notebooks call dbfs:/ (unless NBFLOW_DBFS_ROOT names another)
    .nbflow/volumes/c/s/v/     the managed volume c.s.v (/Volumes/c/s/v)
    .nbflow/catalog/           the catalog of record (tables.json)
    .nbflow/warehouse/         spark.sql.warehouse.dir of the local cluster
    .nbflow/cluster/           the local cluster: state.json, token, lock, server.log, sc.sock
    .nbflow/workspace/         nbflow serve's state; its tree/ is what notebooks call /Workspace
    .nbflow/remote/            what `nbflow remote deploy` made, one file a plan
    .nbflow/python/            notebook-scoped Python environments (%pip), one a run
    .nbflow/mlflow/            the MLflow tracking store
    .nbflow/sandbox/           the kernels' sandbox root (a mount point)
    .nbflow/jupyter/           nbflow lab's Jupyter data folder (the nbflow kernel's spec)
    .nbflow/cache/             what commands remember to start faster (notebooks read before)
    .nbflow/pytest/gw0/        a project of its own for each pytest-xdist worker (pytest --nbflow)
    .nbflow/pytest/remote/     notebooks staged as one-task plans for a workspace (--nbflow-target)
    .nbflow/secrets.yaml       secrets (or .yml/.json; NBFLOW_SECRETS_FILE names another)

This module imports only the standard library: notebook kernels import it.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".nbflow"
PROCESSED = "processed"
# The default DBFS root, relative to the project (what a context without a project uses).
DBFS = Path(STATE_DIR, "dbfs")


def project_dir() -> Path:
    return Path(os.environ.get("NBFLOW_PROJECT_DIR") or os.getcwd()).resolve()


def _state(project: str | Path, *parts: str) -> Path:
    return Path(project).joinpath(STATE_DIR, *parts).resolve()


def processed_dir(project: str | Path) -> Path:
    """Where runs write their outputs by default, one folder a run (``processed/<run-id>``)."""
    return Path(project).resolve() / PROCESSED


def dbfs_root(project: Path) -> Path:
    return Path(os.environ.get("NBFLOW_DBFS_ROOT") or project / DBFS).resolve()


def volumes_root(project: str | Path) -> Path:
    """What a notebook calls ``/Volumes``: the volume ``c.s.v`` is the folder ``c/s/v`` here."""
    return _state(project, "volumes")


def catalog_dir(project: str | Path) -> Path:
    """The catalog of record (:class:`nbflow.catalog.Registry`): ``tables.json`` and its backup."""
    return _state(project, "catalog")


def catalog_file(project: str | Path) -> Path:
    """The catalog of record itself (its last good copy is beside it, ``.bak``)."""
    return catalog_dir(project) / "tables.json"


def warehouse_dir(project: str | Path) -> Path:
    """The local cluster's ``spark.sql.warehouse.dir``."""
    return _state(project, "warehouse")


def jupyter_dir(project: str | Path) -> Path:
    """What ``nbflow lab`` puts on ``JUPYTER_PATH``: the nbflow kernel's spec (``kernels/nbflow``)."""
    return _state(project, "jupyter")


def worker_project(project: str | Path, worker: str) -> Path:
    """The project of a pytest-xdist worker of ``pytest --nbflow``: its own catalog, tables and
    cluster, so that items running at once on different workers never write the same table."""
    return _state(project, "pytest", worker)


def remote_stage_dir(project: str | Path, name: str) -> Path:
    """Where ``pytest --nbflow --nbflow-target=databricks`` stages a notebook (and its folder's
    notebooks) as a one-task plan to deploy."""
    return _state(project, "pytest", "remote", name)


def cache_dir(project: str | Path) -> Path:
    """What commands remember between them to start faster (:mod:`nbflow.notebook_facts`)."""
    return _state(project, "cache")


def cluster_dir(project: str | Path) -> Path:
    """The local cluster's own folder (mode 0700): its state, token, lock, log and socket."""
    return _state(project, "cluster")


def cluster_state_file(project: str | Path) -> Path:
    return cluster_dir(project) / "state.json"


def cluster_log_file(project: str | Path) -> Path:
    return cluster_dir(project) / "server.log"


def project_of_cluster_log(log: str | Path) -> Path:
    """The project whose cluster log ``log`` is (the inverse of :func:`cluster_log_file`)."""
    return Path(log).parents[2]


def cluster_token_file(project: str | Path) -> Path:
    return cluster_dir(project) / "token"


def cluster_lock_file(project: str | Path) -> Path:
    return cluster_dir(project) / "lock"


def cluster_socket_file(project: str | Path) -> Path:
    """The gated Sail cluster's Unix socket, where the path is short enough for one."""
    return cluster_dir(project) / "sc.sock"


def cluster_sandbox_dir(project: str | Path) -> Path:
    """The gated Sail server's sandbox root (a mount point)."""
    return cluster_dir(project) / "sandbox"


def workspace_dir(project: str | Path) -> Path:
    """``nbflow serve``'s state: objects, clusters, jobs and runs (see :func:`workspace_root`)."""
    return _state(project, "workspace")


def workspace_root(project: str | Path) -> Path:
    """What a notebook calls ``/Workspace``: the tree of the project's local workspace (``nbflow
    serve`` keeps its imported notebooks and files there, by workspace path, beside its own state
    in :func:`workspace_dir`), so a notebook sees the workspace's files at ``/Workspace/...`` as on
    Databricks, and cannot reach the server's state through it."""
    return workspace_dir(project) / "tree"


def deployments_dir(project: str | Path) -> Path:
    """What ``nbflow remote deploy`` made, one JSON file a plan."""
    return _state(project, "remote")


def python_envs_root(project: str | Path) -> Path:
    """Where runs keep their notebook-scoped Python environments (``%pip install``), one folder a run."""
    return _state(project, "python")


def mlflow_dir(project: str | Path) -> Path:
    """The project's MLflow tracking store (MLflow's file store)."""
    return _state(project, "mlflow")


def sandbox_dir(project: str | Path) -> Path:
    """The kernels' sandbox root (a mount point; see :mod:`nbflow.sandbox`)."""
    return _state(project, "sandbox")


def secrets_file(project: Path) -> Path | None:
    named = os.environ.get("NBFLOW_SECRETS_FILE")
    if named:
        return Path(named).resolve()
    for name in ("secrets.yaml", "secrets.yml", "secrets.json"):
        candidate = project / STATE_DIR / name
        if candidate.is_file():
            return candidate
    return None
