"""The command lines and environments that start each cluster engine's server.

Sail runs as ``python -m pysail spark server`` with Unity Catalog's catalogs as its own, normally
behind the gate (``python -m nbflow.cluster.gate``, see :mod:`nbflow.cluster.gate`); the JVM engine
runs as the pyspark wheel's ``spark-submit`` of the Spark Connect server. Every server binds to
127.0.0.1 only and gets no secrets. The command lines are also how a server is recognized later
(:mod:`nbflow.cluster.processes`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from ..catalog import (
    DEFAULT_CATALOG,
    LEGACY_CATALOG,
    PLAIN_NAME,
    SPARE_CATALOG_PREFIX,
    SPARE_CATALOGS,
    SYSTEM_CATALOG,
    Registry,
)
from ..errors import CatalogDamaged, EnvironmentFailure
from ..project import (
    cluster_dir,
    cluster_sandbox_dir,
    dbfs_root,
    volumes_root,
    warehouse_dir,
    workspace_root,
)
from ..runtime.secrets import without_secrets
from ..sandbox import SWITCH_ENV
from .engines import EngineChoice

HOST = "127.0.0.1"
GATE_MODULE = "nbflow.cluster.gate"
SPARK_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def sail_catalog_list(project: Path) -> str:
    """Sail's ``SAIL_CATALOG__LIST``: one in-memory catalog per Unity Catalog catalog, and spares."""
    try:
        wanted = [name for name in Registry(project).catalogs() if name not in (LEGACY_CATALOG, SYSTEM_CATALOG)]
    except CatalogDamaged:
        wanted = [DEFAULT_CATALOG]  # the notebook that touches a table reports the damage
    # Only plain names go into Sail's configuration; any other is served by a spare catalog.
    names = ["spark_catalog", *(n for n in wanted if PLAIN_NAME.fullmatch(n)),
             *(f"{SPARE_CATALOG_PREFIX}{i}" for i in range(1, SPARE_CATALOGS + 1))]
    return "[" + ", ".join(f'{{type="memory", name="{n}", initial_database=["default"]}}' for n in names) + "]"


def _pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentFailure(f"the spark engine needs pyspark, which {sys.executable} does not have")
    return Path(next(iter(spec.submodule_search_locations)))


def server_command(choice: EngineChoice, port: int, project: Path) -> tuple[list[str], dict[str, str]]:
    """The server's command line and environment, listening on ``HOST:port``."""
    # The server runs users' Python UDFs: it gets no secrets (the runtime reads them, redacted).
    env = without_secrets()
    if choice.cluster_engine == "sail":
        if importlib.util.find_spec("pysail") is None:
            raise EnvironmentFailure(f"the sail engine needs pysail, which {sys.executable} does not have")
        command = [sys.executable, "-m", "pysail", "spark", "server", "--ip", HOST, "--port", str(port),
                   "-C", str(cluster_dir(project))]
        # Unity Catalog's catalogs as Sail's own (in-memory) catalogs: `spark_catalog` (Spark's
        # name; nbflow maps `hive_metastore` onto it), `main`, every catalog the project's
        # registry holds, and spare catalogs that stand for catalogs created while this server
        # runs (Sail cannot add a catalog at run time; see nbflow.runtime.unity).
        env.setdefault("SAIL_CATALOG__LIST", sail_catalog_list(project))
        env.setdefault("SAIL_CATALOG__DEFAULT_CATALOG", DEFAULT_CATALOG)
        return command, env
    home = _pyspark_home()
    submit = home / "bin" / "spark-submit"
    if not submit.is_file():
        raise EnvironmentFailure(f"the spark engine needs {submit}, which this pyspark does not ship")
    if not env.get("JAVA_HOME") and shutil.which("java") is None:
        raise EnvironmentFailure("the spark engine needs Java 17 or later: java is not on PATH and JAVA_HOME is unset")
    confs = [
        f"spark.connect.grpc.binding.address={HOST}",
        f"spark.connect.grpc.binding.port={port}",
        f"spark.sql.warehouse.dir={warehouse_dir(project)}",
        "spark.ui.enabled=false",  # the UI would listen on every interface
        f"spark.driver.bindAddress={HOST}",
        f"spark.driver.host={HOST}",
        # Sized for one machine: Delta's defaults are for clusters (50 partitions to rebuild a
        # table's state, 10000 tasks to list files for VACUUM), which cost seconds per statement
        # on two cores; Databricks sizes them to its cluster too.
        "spark.databricks.delta.snapshotPartitions=2",
        f"spark.sql.sources.parallelPartitionDiscovery.parallelism={2 * (os.cpu_count() or 1)}",
        # Shuffles start with this many partitions, not spark.sql.shuffle.partitions' 200 (which
        # notebooks still read as 200, as on Databricks): Delta's VACUUM and MERGE shuffle small
        # tables, and 200 tasks each made a VACUUM take 15-30 s instead of ~5 s on two cores.
        f"spark.sql.adaptive.coalescePartitions.initialPartitionNum={2 * (os.cpu_count() or 1)}",
    ]
    command = [str(submit), "--master", "local[*]", "--class", SPARK_SERVER_CLASS, "--name", "nbflow",
               *(arg for conf in confs for arg in ("--conf", conf)), *choice.spark_args]
    # The wheel's own Spark, whatever SPARK_HOME the user has; Python UDFs on this interpreter.
    env.update(SPARK_HOME=str(home), PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP=HOST)
    return command, env


def gate_command(project: Path, socket_file: Path, engine_command: list[str]) -> list[str]:
    """The gate's command line, which starts ``engine_command`` (Sail) behind it."""
    # The project's folders the gate maps on /Volumes, /dbfs and /Workspace for Sail (as kernels see them).
    folders = ["--volumes", str(volumes_root(project)), "--dbfs", str(dbfs_root(project)),
               "--workspace", str(workspace_root(project)), "--sandbox-root", str(cluster_sandbox_dir(project))]
    if os.environ.get(SWITCH_ENV, "").strip() == "0":
        folders = []
    return [sys.executable, "-m", GATE_MODULE, "--cluster-dir", str(cluster_dir(project)),
            "--socket", str(socket_file), *folders,
            "--", *engine_command]
