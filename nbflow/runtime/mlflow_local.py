"""MLflow in a kernel, when the notebook's environment has it (``pip install 'nbflow[ml]'``).

Runs log to the project's own tracking store, ``<project>/.nbflow/mlflow`` (MLflow's file store,
which ``mlflow ui --backend-store-uri .nbflow/mlflow`` opens), unless the user's environment names
another in ``MLFLOW_TRACKING_URI``. What names the Databricks workspace, which a local run does
not reach, is the local store instead:

- the tracking URI ``databricks`` (``mlflow.set_tracking_uri("databricks")``, or the variable);
- the registry URIs ``databricks-uc`` (Unity Catalog models, ``catalog.schema.model``) and
  ``databricks`` (the workspace registry): models register in the tracking store's registry.

The mapping is applied when MLflow's store modules are first imported (see
:mod:`nbflow.runtime.modules`), so a kernel that never imports MLflow does not pay for it.
Imported inside kernels: standard library only.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

from ..project import mlflow_dir
from .active import installed

LOCAL_URI_ENV = "NBFLOW_MLFLOW_URI"  # the project's local store, whatever MLFLOW_TRACKING_URI says
WORKSPACE_SCHEMES = ("databricks", "databricks-uc")


def configure(project_dir: str) -> None:
    """Point MLflow at the project's store (unless the user chose one) before it is imported."""
    local = mlflow_dir(project_dir).as_uri()
    os.environ[LOCAL_URI_ENV] = local
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = local
    if _is_workspace(os.environ["MLFLOW_TRACKING_URI"]) or os.environ["MLFLOW_TRACKING_URI"] == local:
        # MLflow 3 refuses its file store unless told: it is the store a local project keeps.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _is_workspace(uri: str | None) -> bool:
    if not uri:
        return False
    scheme = uri.split(":", 1)[0]
    return scheme in WORKSPACE_SCHEMES


def _local_uri() -> str:
    return os.environ.get(LOCAL_URI_ENV) or mlflow_dir(Path.cwd()).as_uri()


def patch_spark_utils(module: types.ModuleType) -> None:
    """``mlflow.utils._spark_utils``: MLflow asks for the active Spark session at every
    ``start_run`` (is this a Databricks cluster?); it gets the kernel's session only if the notebook
    already attached it, so that logging a run does not start the local cluster."""
    original = module._get_active_spark_session

    def active() -> Any:
        session = installed()
        if session is None:
            return original()
        return session.lakehouse.spark() if session.lakehouse.attached else None

    setattr(module, "_get_active_spark_session", active)  # noqa: B010 - attributes mypy cannot see


def patch_tracking(module: types.ModuleType) -> None:
    """``mlflow.tracking._tracking_service.utils``: the ``databricks`` tracking URI is the local
    store, whether set (``mlflow.set_tracking_uri("databricks")``) or passed to a client."""
    set_tracking_uri = module.set_tracking_uri
    file_store = module._get_file_store

    def set_local(uri: Any) -> None:
        set_tracking_uri(_local_uri() if _is_workspace(str(uri)) else uri)

    set_local.__doc__ = set_tracking_uri.__doc__
    setattr(module, "set_tracking_uri", set_local)  # noqa: B010

    def local_store(store_uri: str, **kwargs: Any) -> Any:
        return file_store(_local_uri())

    module._tracking_store_registry.register("databricks", local_store)


def patch_registry(module: types.ModuleType) -> None:
    """``mlflow.tracking._model_registry.utils``: a ``databricks-uc`` or ``databricks`` registry URI
    (set, in ``MLFLOW_REGISTRY_URI``, or passed to a client) resolves to the tracking store's own
    registry (the local store if tracking names Databricks too). Without a registry URI it is the
    tracking store's, as MLflow has it, without asking the Spark session for one (which would
    start the local cluster for nothing)."""

    def tracking(uri: str | None) -> str:
        from mlflow.tracking._tracking_service.utils import _resolve_tracking_uri  # lazy: mlflow is optional

        resolved: str | None = _resolve_tracking_uri(uri)
        return resolved if resolved and not _is_workspace(resolved) else _local_uri()

    def resolve(registry_uri: str | None = None, tracking_uri: str | None = None) -> str:
        uri = registry_uri or getattr(module, "_registry_uri", None) or os.environ.get("MLFLOW_REGISTRY_URI")
        if not uri or _is_workspace(uri):
            return tracking(tracking_uri)
        return str(uri)

    if hasattr(module, "_resolve_registry_uri"):  # MLflow 3: every path resolves through it
        setattr(module, "_resolve_registry_uri", resolve)  # noqa: B010 - attributes mypy cannot see
    original = getattr(module, "get_registry_uri")  # noqa: B009

    def get_registry_uri() -> str:
        return resolve()

    get_registry_uri.__doc__ = original.__doc__
    setattr(module, "get_registry_uri", get_registry_uri)  # noqa: B010
