"""``dbutils.notebook.entry_point.getDbutils().notebook().getContext()``: the notebook's context as
Databricks hands it to Python through py4j, with Scala's ``Option`` and ``Map`` shapes, so that
``notebookPath().get()``, ``tags().apply("user")``, ``tags().get("jobId").isDefined()`` and
``json.loads(ctx.safeToJson())`` work unchanged.

What the values are locally (the README lists them):

- ``notebookPath``: a workspace path without extension, as Databricks gives it (no ``/Workspace``
  prefix). A notebook inside the local workspace's tree (``.nbflow/workspace/tree``, what
  ``/Workspace`` is in a kernel) is its path there; any other notebook is
  ``/Users/<user>/<project folder>/<path in the project without extension>``.
- ``userName``/``tags().apply("user")``: the operating system's user.
- ``currentRunId``/``jobId``/``tags()["jobId"]``...: set when the notebook runs as a task of a
  plan (the plan run's id; no job id exists locally), empty otherwise, as in an interactive run.
- ``apiUrl``/``apiToken``/``workspaceId``/``browserHostName``: empty. A local run has no
  workspace API to hand out; a notebook that calls ``.get()`` on them fails with one line saying so.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NoSuchElementException
from ..project import workspace_root

if TYPE_CHECKING:
    from .session import Session

CLUSTER_NAME = "nbflow-local"
# What `nbflow serve` offers as its newest LTS runtime: the Databricks behaviour nbflow follows.
SPARK_VERSION = "16.4.x-scala2.12"
CLOUD_PROVIDER = "Local"


class Option:
    """Scala's ``Option``: ``Some(value)`` or ``None``."""

    def __init__(self, value: Any = None, why_empty: str = "") -> None:
        self._value = value
        self._why = why_empty

    def get(self) -> Any:
        if self._value is None:
            raise NoSuchElementException(f"java.util.NoSuchElementException: None.get{self._why}")
        return self._value

    def isDefined(self) -> bool:
        return self._value is not None

    def isEmpty(self) -> bool:
        return self._value is None

    def nonEmpty(self) -> bool:
        return self._value is not None

    def getOrElse(self, default: Any) -> Any:
        return default if self._value is None else self._value

    def id(self) -> Any:
        # currentRunId() is Option[RunId] and notebooks call .get().id(); here the value is the id.
        return self.get()

    def toString(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return "None" if self._value is None else f"Some({self._value})"


class ScalaMap:
    """Scala's ``Map[String, String]`` as py4j shows it (``apply``, ``get`` → Option, ``contains``);
    also ``m[key]``, ``key in m`` and iteration over its keys."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = dict(items)

    def apply(self, key: str) -> str:
        if key not in self._items:
            raise NoSuchElementException(f"java.util.NoSuchElementException: key not found: {key}")
        return self._items[key]

    def get(self, key: str) -> Option:
        return Option(self._items.get(key))  # Scala's get: an Option

    def contains(self, key: str) -> bool:
        return key in self._items

    def getOrElse(self, key: str, default: Any) -> Any:
        return self._items.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.apply(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "Map(" + ", ".join(f"{k} -> {v}" for k, v in self._items.items()) + ")"


_NO_API = (": a local run has no workspace API or token (nbflow); "
           "use .getOrElse(None) where the notebook can do without")


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment (a container without passwd entry)
        return "nbflow"


def workspace_path(notebook: str, project: str) -> str:
    """The workspace path Databricks would give the notebook file ``notebook`` (see the module doc)."""
    if not notebook:
        return ""
    file = Path(notebook).resolve()
    root = Path(project).resolve()
    stem = file.with_suffix("") if file.suffix.lower() in (".py", ".ipynb", ".sql") else file
    tree = workspace_root(root)
    if tree in stem.parents:
        return "/" + stem.relative_to(tree).as_posix()
    if root in stem.parents:
        return f"/Users/{user_name()}/{root.name}/{stem.relative_to(root).as_posix()}"
    return f"/Users/{user_name()}/{stem.name}"


def cluster_id(project: str) -> str:
    """The project's local cluster, named as a Databricks cluster id is (stable per project)."""
    return f"{CLUSTER_NAME}-{hashlib.sha1(str(Path(project).resolve()).encode()).hexdigest()[:8]}"


def spark_conf(session: Session) -> dict[str, str]:
    """The ``spark.databricks.*`` keys set on the kernel's Spark session (the README lists them)."""
    ctx = session.context
    ident = cluster_id(ctx.project_dir)
    tags = [{"key": "ClusterId", "value": ident}, {"key": "ClusterName", "value": CLUSTER_NAME},
            {"key": "Creator", "value": user_name()}, {"key": "Vendor", "value": "nbflow"}]
    return {
        "spark.databricks.clusterUsageTags.clusterName": CLUSTER_NAME,
        "spark.databricks.clusterUsageTags.clusterId": ident,
        "spark.databricks.clusterUsageTags.sparkVersion": SPARK_VERSION,
        "spark.databricks.clusterUsageTags.cloudProvider": CLOUD_PROVIDER,
        "spark.databricks.clusterUsageTags.clusterOwnerUserName": user_name(),
        "spark.databricks.clusterUsageTags.clusterAllTags": json.dumps(tags),
        "spark.databricks.notebook.path": workspace_path(ctx.notebook_path, ctx.project_dir),
    }


class NotebookContext:
    """What ``getContext()`` returns."""

    def __init__(self, session: Session) -> None:
        ctx = session.context
        self._path = workspace_path(ctx.notebook_path, ctx.project_dir)
        self._user = user_name()
        self._cluster = cluster_id(ctx.project_dir)
        self._run_id = ctx.run_id or None
        in_job = ctx.job_task_values is not None
        tags = {"user": self._user, "clusterId": self._cluster, "clusterName": CLUSTER_NAME,
                "notebookPath": self._path}
        if in_job and ctx.run_id:
            tags.update(runId=ctx.run_id, multitaskParentRunId=ctx.run_id, taskKey=ctx.task_key)
        self._tags = tags
        self._job_run = in_job and bool(ctx.run_id)

    def notebookPath(self) -> Option:
        return Option(self._path or None)

    def userName(self) -> Option:
        return Option(self._user)

    def clusterId(self) -> Option:
        return Option(self._cluster)

    def tags(self) -> ScalaMap:
        return ScalaMap(self._tags)

    def extraContext(self) -> ScalaMap:
        return ScalaMap({"notebook_path": self._path})

    def currentRunId(self) -> Option:
        return Option(self._run_id if self._job_run else None)

    def rootRunId(self) -> Option:
        return self.currentRunId()

    def jobId(self) -> Option:
        return Option(None)  # plans have no job id locally

    def notebookId(self) -> Option:
        return Option(None)

    def apiUrl(self) -> Option:
        return Option(None, _NO_API)

    def apiToken(self) -> Option:
        return Option(None, _NO_API)

    def workspaceId(self) -> Option:
        return Option(None, _NO_API)

    def browserHostName(self) -> Option:
        return Option(None, _NO_API)

    def toJson(self) -> str:
        return json.dumps({"tags": self._tags, "extraContext": {"notebook_path": self._path},
                           "currentRunId": self.currentRunId().getOrElse(None),
                           "rootRunId": self.rootRunId().getOrElse(None)})

    def safeToJson(self) -> str:
        return json.dumps({"attributes": {"notebook_path": self._path, "user": self._user,
                                          "clusterId": self._cluster, **{k: v for k, v in self._tags.items()
                                                                         if k not in ("user", "notebookPath")}}})

    def __repr__(self) -> str:
        return f"<notebook context {self._path} (nbflow)>"


class _NotebookHandle:
    def __init__(self, session: Session) -> None:
        self._session = session

    def getContext(self) -> NotebookContext:
        return NotebookContext(self._session)


class _JavaDbutils:
    def __init__(self, session: Session) -> None:
        self._session = session

    def notebook(self) -> _NotebookHandle:
        return _NotebookHandle(self._session)


class EntryPoint:
    """``dbutils.notebook.entry_point`` (also ``dbutils.entry_point``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def getDbutils(self) -> _JavaDbutils:
        return _JavaDbutils(self._session)

    def __repr__(self) -> str:
        return "<entry_point (nbflow): getDbutils().notebook().getContext()>"
