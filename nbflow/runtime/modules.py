"""What real notebooks import to reach the runtime, answered with the kernel's own objects.

Installed in a kernel by :func:`install` (never in nbflow's own process, never by editing an
installed package):

- ``dbruntime`` (``UserNamespaceInitializer``, ``dbruntime.dbutils.FileInfo``/``DBUtils``,
  ``dbruntime.databricks_repl_context.get_context``): the module Databricks Runtime has and
  ``databricks.sdk.runtime`` looks for. With it importable, ``from databricks.sdk.runtime import
  *`` takes the kernel's ``spark``, ``dbutils``, ``display``... instead of building a remote
  ``WorkspaceClient`` that asks for workspace credentials.
- ``pyspark.dbutils.DBUtils(spark)``: the kernel's ``dbutils``.
- ``SparkSession.builder.getOrCreate()`` (any builder options: they are applied to the session
  as Spark Connect applies them, silently), ``SparkSession.getActiveSession()``,
  ``SparkSession.active()``, and ``DatabricksSession.builder...getOrCreate()`` when
  ``databricks-connect`` is installed: the kernel's session, attached on first need (so a UDF or
  a DDL string parsed before ``spark`` was first touched finds it too).
- ``DataFrame.display()``: Databricks' ``display`` as a method.

The pyspark and databricks-connect patches are applied when those modules are first imported (an
import hook), so a kernel that never imports pyspark does not pay for importing it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import mlflow_local
from .active import current
from .display import display as show
from .entry_point import NotebookContext
from .fs import FileInfo

if TYPE_CHECKING:
    from .session import Session

_session: Session | None = None
_namespace: dict[str, Any] = {}
_inside = threading.local()  # set while this thread attaches the kernel's session through a hook


def kernel_spark() -> Any:
    """The kernel's Spark session, attaching it if needed; None outside an nbflow kernel, or
    when called again from inside that attach (pyspark asking for the session being made)."""
    if _session is None or getattr(_inside, "busy", False):
        return None
    _inside.busy = True
    try:
        return _session.lakehouse.spark()
    finally:
        _inside.busy = False


# -- modules nbflow provides -----------------------------------------------------------------
class _UserNamespaceInitializer:
    """``dbruntime.UserNamespaceInitializer``: what ``databricks.sdk.runtime`` asks for the
    notebook's globals."""

    @classmethod
    def getOrCreate(cls) -> _UserNamespaceInitializer:
        return cls()

    def get_namespace_globals(self) -> dict[str, Any]:
        names = dict(_namespace)
        if _session is not None and _session.lakehouse.attached:
            names["spark"] = _session.lakehouse.spark()  # the session itself once there is one
        return names


class _ReplContext:
    """``dbruntime.databricks_repl_context.get_context()``: the notebook's context as attributes."""

    def __init__(self, session: Session) -> None:
        ctx = NotebookContext(session)
        self.notebookPath = ctx.notebookPath().getOrElse(None)
        self.userName = ctx.userName().getOrElse(None)
        self.clusterId = ctx.clusterId().getOrElse(None)
        self.currentRunId = ctx.currentRunId().getOrElse(None)
        self.isInJob = self.currentRunId is not None
        self.jobId = None
        self.notebookId = None
        # No workspace API locally: the SDK's runtime auth sees None and skips itself.
        self.workspaceUrl = None
        self.apiToken = None
        self.apiUrl = None
        self.browserHostName = None
        self.workspaceId = None


def _get_context() -> _ReplContext | None:
    return None if _session is None else _ReplContext(_session)


def _dbutils_factory(spark: Any = None) -> Any:
    """``DBUtils(spark)``: the kernel's ``dbutils`` whatever session is passed."""
    return current().dbutils


def _module(name: str, package: bool = False, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, "nbflow's local stand-in for a Databricks Runtime module")
    if package:
        module.__path__ = []
    module.__dict__.update(attrs)
    return module


def _provided() -> dict[str, Callable[[], types.ModuleType]]:
    return {
        "dbruntime": lambda: _module("dbruntime", package=True, UserNamespaceInitializer=_UserNamespaceInitializer),
        "dbruntime.dbutils": lambda: _module("dbruntime.dbutils", FileInfo=FileInfo, DBUtils=_dbutils_factory),
        "dbruntime.databricks_repl_context": lambda: _module("dbruntime.databricks_repl_context",
                                                             get_context=_get_context),
        "pyspark.dbutils": lambda: _module("pyspark.dbutils", DBUtils=_dbutils_factory, FileInfo=FileInfo),
    }


# -- patches applied when a module is first imported -------------------------------------------
def _patch_connect_session(module: types.ModuleType) -> None:
    cls = module.SparkSession
    active_session = cls.getActiveSession.__func__
    active = cls.active.__func__
    default = cls._get_default_session.__func__

    def prefer_kernel(original: Callable[[Any], Any]) -> classmethod[Any, Any, Any]:
        def method(klass: Any) -> Any:
            spark = kernel_spark()
            return spark if spark is not None else original(klass)
        method.__name__ = original.__name__
        method.__doc__ = original.__doc__
        return classmethod(method)

    cls.getActiveSession = prefer_kernel(active_session)
    cls.active = prefer_kernel(active)
    cls._get_default_session = prefer_kernel(default)


def _patch_classic_session(module: types.ModuleType) -> None:
    builder = module.SparkSession.Builder
    original = builder.getOrCreate

    def getOrCreate(self: Any) -> Any:
        spark = kernel_spark()
        if spark is None:
            return original(self)
        _apply_options(spark, dict(self._options))
        return spark

    getOrCreate.__doc__ = original.__doc__
    builder.getOrCreate = getOrCreate


# Builder options that name a session rather than configure one: a no-op on an existing session.
_NOT_CONF = ("spark.remote", "spark.master", "spark.app.name", "spark.api.mode")


def _apply_options(spark: Any, options: dict[str, Any]) -> None:
    """Builder options on the existing session, as Spark Connect's ``getOrCreate`` applies them:
    silently (a static conf such as Hive support cannot change on a running session)."""
    conf = {k: str(v) for k, v in options.items() if k not in _NOT_CONF}
    if conf:
        spark.conf._set_all(configs=conf, silent=True)


def _patch_dataframe(module: types.ModuleType) -> None:
    def display(self: Any, *args: Any, **kwargs: Any) -> None:
        """Databricks' ``display(df)`` as a method: the DataFrame as a table."""
        show(self, *args, **kwargs)

    module.DataFrame.display = display


def _patch_databricks_connect(module: types.ModuleType) -> None:
    cls = getattr(module, "DatabricksSession", None)
    if cls is None:
        return
    builder = getattr(cls, "Builder", None) or type(cls.builder)

    def session(self: Any) -> Any:
        return kernel_spark()

    # Inside an nbflow kernel both give the kernel's session: the builder's workspace, profile,
    # cluster or serverless settings name a remote workspace, which a local run does not reach.
    builder.getOrCreate = session
    builder.create = session


_AFTER: dict[str, Callable[[types.ModuleType], None]] = {
    "pyspark.sql.connect.session": _patch_connect_session,
    "pyspark.sql.session": _patch_classic_session,
    "pyspark.sql.dataframe": _patch_dataframe,
    "databricks.connect": _patch_databricks_connect,
    # MLflow's "databricks" and "databricks-uc" stores are the project's local one (mlflow_local).
    "mlflow.utils._spark_utils": lambda m: mlflow_local.patch_spark_utils(m),
    "mlflow.tracking._tracking_service.utils": lambda m: mlflow_local.patch_tracking(m),
    "mlflow.tracking._model_registry.utils": lambda m: mlflow_local.patch_registry(m),
}


class _Loader(importlib.abc.Loader):
    def __init__(self, make: Callable[[], types.ModuleType]) -> None:
        self._make = make

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self._make()

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _PatchingLoader(importlib.abc.Loader):
    """The real loader, then the patch; anything else (resources, source) is the real loader's."""

    def __init__(self, loader: Any, patch: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        created: types.ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        _apply(self._patch, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.provided = _provided()

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        make = self.provided.get(fullname)
        if make is not None:
            return importlib.util.spec_from_loader(fullname, _Loader(make), is_package=fullname == "dbruntime")
        patch = _AFTER.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:  # the spec the import would have had without this finder
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install(session: Session, names: dict[str, Any]) -> None:
    """Make the modules importable and the entry points give the kernel's objects (``names``:
    the runtime's globals, as ``dbruntime`` hands them to ``databricks.sdk.runtime``)."""
    global _session
    _session = session
    _namespace.clear()
    _namespace.update(names)
    # pyspark's functions, types and UDFs choose their Spark Connect implementation by this; set
    # from the start, so that code run before `spark` is first used does not look for a JVM.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name, patch in _AFTER.items():
        module = sys.modules.get(name)
        if module is not None:  # imported before the task (a warm kernel's Spark session)
            _apply(patch, module)


def _apply(patch: Callable[[types.ModuleType], None], module: types.ModuleType) -> None:
    if not getattr(module, "_nbflow_patched", False):
        patch(module)
        module._nbflow_patched = True  # type: ignore[attr-defined]
