"""The all-purpose clusters of the local workspace (Clusters API), backed by the project's cluster.

A cluster here is a record with Databricks' life cycle: ``create`` answers at once with the
cluster ``PENDING``, the project's local Spark Connect server is started (or found running), and
the cluster becomes ``RUNNING``, or ``ERROR`` with the reason if the server cannot start. Every
workspace cluster shares the one local server: its engine is what ``nbflow cluster`` would pick.
``delete`` terminates the record (``TERMINATING`` then ``TERMINATED``) and leaves the local server
to ``nbflow cluster stop``, as notebooks and other clusters may be using it.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api_errors import ApiError

SPARK_VERSIONS = [
    ("15.4.x-scala2.12", "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"),
    ("16.4.x-scala2.12", "16.4 LTS (includes Apache Spark 3.5.2, Scala 2.12)"),
    ("17.3.x-scala2.13", "17.3 LTS (includes Apache Spark 4.0.0, Scala 2.13)"),
]
NODE_TYPES = [
    {"node_type_id": "local", "memory_mb": 4096, "num_cores": 2.0, "description": "this machine (nbflow serve)",
     "instance_type_id": "local", "category": "General Purpose", "is_deprecated": False},
    {"node_type_id": "i3.xlarge", "memory_mb": 31232, "num_cores": 4.0, "description": "i3.xlarge",
     "instance_type_id": "i3.xlarge", "category": "Storage Optimized", "is_deprecated": False},
    {"node_type_id": "Standard_DS3_v2", "memory_mb": 14336, "num_cores": 4.0, "description": "Standard_DS3_v2",
     "instance_type_id": "Standard_DS3_v2", "category": "General Purpose", "is_deprecated": False},
    {"node_type_id": "n2-highmem-4", "memory_mb": 32768, "num_cores": 4.0, "description": "n2-highmem-4",
     "instance_type_id": "n2-highmem-4", "category": "Memory Optimized", "is_deprecated": False},
]
ACTIVE = ("PENDING", "RUNNING", "RESTARTING", "RESIZING", "TERMINATING")


class ClustersStore:
    def __init__(self, root: Path, start_cluster: Callable[[], None]) -> None:
        """``start_cluster`` starts (or finds) the project's local Spark server, raising if it cannot."""
        self._file = root / "clusters.json"
        self._start_cluster = start_cluster
        self._lock = threading.RLock()
        self._clusters: dict[str, dict[str, Any]] = {}
        if self._file.is_file():
            self._clusters = json.loads(self._file.read_text(encoding="utf-8"))
            for cluster in self._clusters.values():
                if cluster["state"] in ACTIVE:  # the server stopped under it
                    self._terminated(cluster, "INACTIVITY", "the workspace server (nbflow serve) stopped")

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._clusters, indent=1), encoding="utf-8")
        os.replace(tmp, self._file)

    # -- API ------------------------------------------------------------------------------------
    def create(self, spec: dict[str, Any]) -> str:
        _validate(spec)
        cluster_id = time.strftime("%m%d-%H%M%S-") + secrets.token_hex(4)
        cluster = {k: v for k, v in spec.items() if k not in ("apply_policy_default_values",)}
        cluster.update({
            "cluster_id": cluster_id, "cluster_name": spec.get("cluster_name") or cluster_id,
            "driver_node_type_id": spec.get("driver_node_type_id") or spec.get("node_type_id"),
            "cluster_source": spec.get("cluster_source") or "API", "creator_user_name": "nbflow",
            "default_tags": {"Vendor": "Databricks", "Creator": "nbflow", "ClusterName": spec.get("cluster_name") or "",
                             "ClusterId": cluster_id},
            "state": "PENDING", "state_message": "Starting the local Spark Connect server",
            "start_time": _now(), "spark_context_id": 0,
        })
        with self._lock:
            self._clusters[cluster_id] = cluster
            self._save()
        self._boot(cluster_id, "Starting the local Spark Connect server")
        return cluster_id

    def get(self, cluster_id: Any) -> dict[str, Any]:
        with self._lock:
            cluster = self._clusters.get(str(cluster_id))
            if cluster is None or cluster.get("deleted"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist")
            return dict(cluster)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._clusters.values() if not c.get("deleted")]

    def start(self, cluster_id: Any) -> None:
        cluster = self.get(cluster_id)
        if cluster["state"] == "TERMINATED":  # a start of any other state is a no-op, as documented
            self._set(cluster["cluster_id"], state="PENDING", state_message="Starting", start_time=_now())
            self._boot(cluster["cluster_id"], "Starting")

    def restart(self, cluster_id: Any) -> None:
        cluster = self.get(cluster_id)
        if cluster["state"] == "RUNNING":
            self._set(cluster["cluster_id"], state="RESTARTING", state_message="Restarting",
                      last_restarted_time=_now())
            self._boot(cluster["cluster_id"], "Restarting")

    def delete(self, cluster_id: Any, permanent: bool = False) -> None:
        cluster = self.get(cluster_id)
        if cluster["state"] not in ("TERMINATING", "TERMINATED"):
            self._set(cluster["cluster_id"], state="TERMINATING", state_message="Terminating")
            with self._lock:
                self._terminated(self._clusters[cluster["cluster_id"]], "USER_REQUEST", "Terminated by the API")
                self._save()
        if permanent:
            self._set(cluster["cluster_id"], deleted=True)

    def edit(self, spec: dict[str, Any]) -> None:
        cluster = self.get(spec.get("cluster_id"))
        if cluster["state"] not in ("RUNNING", "TERMINATED"):
            raise ApiError(400, "INVALID_STATE", f"Cluster {cluster['cluster_id']} is in unexpected state "
                                                 f"{cluster['state']}: it can be edited only RUNNING or TERMINATED")
        _validate(spec)
        self._set(cluster["cluster_id"], **{k: v for k, v in spec.items() if k != "cluster_id"})
        if cluster["state"] == "RUNNING":
            self.restart(cluster["cluster_id"])

    def ensure_running(self, cluster_id: Any, timeout: float = 120.0) -> dict[str, Any]:
        """For a job run on an all-purpose cluster: start it if terminated, wait until RUNNING."""
        self.start(cluster_id)
        deadline = time.monotonic() + timeout
        while True:
            cluster = self.get(cluster_id)
            if cluster["state"] == "RUNNING":
                return cluster
            if cluster["state"] in ("ERROR", "TERMINATED") or time.monotonic() > deadline:
                raise ApiError(400, "INVALID_STATE", f"Cluster {cluster_id} is {cluster['state']}: "
                                                     f"{cluster.get('state_message') or 'it did not start'}")
            time.sleep(0.1)

    # -- life cycle -----------------------------------------------------------------------------
    def _boot(self, cluster_id: str, what: str) -> None:
        def run() -> None:
            try:
                self._start_cluster()
            except Exception as exc:  # the cluster shows why, as a failed cluster start does
                self._set(cluster_id, state="ERROR", state_message=f"{what} failed: {exc}")
                return
            with self._lock:
                cluster = self._clusters.get(cluster_id)
                if cluster is not None and cluster["state"] in ("PENDING", "RESTARTING"):
                    cluster.update(state="RUNNING", state_message="", spark_context_id=secrets.randbits(62))
                    cluster.pop("terminated_time", None)
                    cluster.pop("termination_reason", None)
                    self._save()

        threading.Thread(target=run, name=f"cluster-{cluster_id}", daemon=True).start()

    def _set(self, cluster_id: str, **values: Any) -> None:
        with self._lock:
            self._clusters[cluster_id].update(values)
            self._save()

    @staticmethod
    def _terminated(cluster: dict[str, Any], code: str, message: str) -> None:
        cluster.update(state="TERMINATED", state_message=message, terminated_time=_now(),
                       termination_reason={"code": code, "type": "SUCCESS", "parameters": {}})


def spark_versions() -> dict[str, Any]:
    return {"versions": [{"key": key, "name": name} for key, name in SPARK_VERSIONS]}


def node_types() -> dict[str, Any]:
    return {"node_types": NODE_TYPES}


def _validate(spec: dict[str, Any]) -> None:
    """The checks the Clusters API makes on create and edit."""
    if not spec.get("spark_version"):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: spark_version")
    if spec["spark_version"] not in {key for key, _ in SPARK_VERSIONS}:
        known = ", ".join(key for key, _ in SPARK_VERSIONS)
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"Invalid spark version {spec['spark_version']} (this workspace has: {known})")
    if not spec.get("node_type_id") and not spec.get("instance_pool_id") and not spec.get("policy_id"):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: node_type_id")
    minutes = spec.get("autotermination_minutes")
    if minutes not in (None, 0) and not (isinstance(minutes, int) and 10 <= minutes <= 10000):
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"Invalid autotermination_minutes {minutes}: 0 (never) or 10 to 10000")
    scale = spec.get("autoscale")
    if isinstance(scale, dict) and not scale.get("max_workers", 0) > scale.get("min_workers", 0):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "autoscale.max_workers must be greater than min_workers")
    workers = spec.get("num_workers", 0)
    if not isinstance(workers, int) or workers < 0:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid num_workers {workers}")


def _now() -> int:
    return int(time.time() * 1000)
