"""Which cluster engine runs a project's cluster, and Delta's jars for the JVM one.

Cluster engines: ``sail`` (pysail, a Rust engine, Delta built in), ``spark`` (the JVM Spark Connect
server shipped in the pyspark wheel, with Delta Lake through delta-spark's jars), an external
``sc://host:port`` endpoint (recorded, never started or stopped), and ``auto``: ``sail`` when
pysail is installed (it starts in about a second, in a fraction of the JVM's memory), else
``spark``. ``auto`` decides from local facts only; it never fetches anything.

Delta's jars for ``spark`` come from ``NBFLOW_DELTA_JARS`` (a folder the user fills) or from nbflow's
cache, which :mod:`nbflow.cluster.delta_jars` fills from Maven on first use.
(The *cluster* engine, not the papermill engine :mod:`nbflow.engine` that runs a notebook.)
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from . import delta_jars

CLUSTER_ENGINES = ("auto", "sail", "spark")
DELTA_CONFS = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
)
# Delta Connect's server plugins: set only when a delta-connect-server jar is among the jars.
DELTA_CONNECT_CONFS = (
    "spark.connect.extensions.relation.classes=org.apache.spark.sql.connect.delta.DeltaRelationPlugin",
    "spark.connect.extensions.command.classes=org.apache.spark.sql.connect.delta.DeltaCommandPlugin",
)
# Delta artifacts in a folder the user names: plain names (delta-spark_2.13-4.x.y.jar), names with
# the Spark suffix Delta uses since 4.1 (delta-spark_4.2_2.13-...), and Ivy cache names
# (io.delta_delta-spark_2.13-...).
_REQUIRED = {"delta-spark": r"delta-spark_(?:4\.2_)?2\.13", "delta-storage": r"delta-storage"}
_CONNECT_SERVER = r"delta-connect-server_(?:4\.2_)?2\.13"
_VERSION = r"(4\.\d+\.\d+(?:[-.][A-Za-z0-9.]+)?)"
_EXTERNAL_URL = re.compile(r"^sc://(?P<host>\[[^\]/]+\]|[^:/;\[\]]+):(?P<port>\d{1,5})(?P<rest>/.*)?$")


@dataclass(frozen=True)
class EngineChoice:
    """What ``start`` will run: the cluster engine, whether Delta works on it, and why it was chosen."""

    cluster_engine: str  # "sail" | "spark" | "external"
    delta: bool
    reason: str
    spark_args: tuple[str, ...] = ()  # extra spark-submit arguments (Delta), cluster engine "spark" only
    url: str | None = None  # cluster engine "external" only
    fetch_delta: bool = False  # "spark" without Delta's jars at hand: start() fetches them first


def find_delta_jars(env: Mapping[str, str] | None = None) -> tuple[list[Path] | None, str]:
    """Delta's jars for the JVM engine, found on local disk only, and where (or why not).

    ``NBFLOW_DELTA_JARS``, when set, names the only folder looked in: every jar in it is used, and
    it must hold delta-spark_2.13 and delta-storage 4.x. Otherwise nbflow's cache, when it holds
    the whole pinned set (:mod:`nbflow.cluster.delta_jars`).
    """
    env = os.environ if env is None else env
    named = env.get("NBFLOW_DELTA_JARS")
    if named:
        folder = Path(named).expanduser()
        jars, problem = _user_jars(folder)
        return (jars, str(folder)) if jars else (None, f"NBFLOW_DELTA_JARS={named}: {problem}")
    folder = delta_jars.jar_dir(env)
    jars = delta_jars.cached(folder)
    if jars:
        return jars, str(folder)
    return None, f"Delta {delta_jars.DELTA_VERSION} not yet fetched into {folder}"


def _user_jars(folder: Path) -> tuple[list[Path] | None, str]:
    try:
        jars = sorted(p for p in folder.iterdir() if p.name.endswith(".jar"))
    except OSError:
        return None, "not a readable directory"
    names = [jar.name for jar in jars]
    for artifact, pattern in _REQUIRED.items():
        regex = re.compile(rf"^(?:io\.delta_)?{pattern}-{_VERSION}\.jar$")
        if not any(regex.match(name) for name in names):
            return None, f"no {artifact} 4.x jar (Scala 2.13) in it"
    return jars, ""


def delta_spark_args(env: Mapping[str, str] | None = None) -> list[str]:
    """spark-submit arguments that give the JVM Spark Connect server Delta; [] when Delta is not at hand.

    ``--jars`` with the jars :func:`find_delta_jars` finds, the Delta session extension and catalog,
    and Delta Connect's server plugins when a delta-connect-server jar is among them.
    """
    jars, _ = find_delta_jars(env)
    if not jars:
        return []
    connect = re.compile(rf"^(?:io\.delta_)?{_CONNECT_SERVER}-{_VERSION}\.jar$")
    confs = [*DELTA_CONFS, *(DELTA_CONNECT_CONFS if any(connect.match(jar.name) for jar in jars) else ())]
    return ["--jars", ",".join(str(jar) for jar in jars), *(arg for conf in confs for arg in ("--conf", conf))]


def choose_engine(cluster_engine: str = "auto", env: Mapping[str, str] | None = None) -> EngineChoice:
    """Resolve ``auto``/``sail``/``spark``/``sc://host:port`` without touching the network.

    ``spark`` without Delta's jars at hand is chosen with ``fetch_delta`` set (unless
    ``NBFLOW_DELTA=0``): :func:`nbflow.cluster.server.start` fetches them, then chooses again.
    """
    env = os.environ if env is None else env
    if cluster_engine.startswith("sc://"):
        parse_external(cluster_engine)
        return EngineChoice("external", False, f"external Spark Connect endpoint {cluster_engine}: nbflow neither "
                            "starts nor stops it, and does not know whether it has Delta", url=cluster_engine)
    check_engine(cluster_engine)
    if cluster_engine == "sail":
        return EngineChoice("sail", True, "engine sail requested (Delta built in)")
    if cluster_engine == "auto":
        if importlib.util.find_spec("pysail") is not None:
            return EngineChoice("sail", True, "auto: sail (Delta built in, starts fastest); "
                                "--engine spark for the JVM engine with delta-spark")
        why = "auto: pysail is not installed, so the JVM spark engine"
    else:
        why = "engine spark requested"
    args = tuple(delta_spark_args(env))
    _, where = find_delta_jars(env)
    if args:
        return EngineChoice("spark", True, f"{why}; Delta from {where}", spark_args=args)
    if env.get("NBFLOW_DELTA") == "0":
        return EngineChoice("spark", False, f"{why}; without Delta (NBFLOW_DELTA=0)")
    if env.get("NBFLOW_DELTA_JARS"):
        return EngineChoice("spark", False, f"{why}; without Delta ({where})")
    return EngineChoice("spark", False, f"{why}; {where}", fetch_delta=True)


def check_engine(cluster_engine: str) -> None:
    """InputError unless ``cluster_engine`` is one nbflow knows (``sc://`` URLs: :func:`parse_external`)."""
    if cluster_engine.startswith("sc://"):
        parse_external(cluster_engine)
    elif cluster_engine not in CLUSTER_ENGINES:
        raise InputError(f"unknown cluster engine {cluster_engine!r}: use auto, sail, spark or sc://HOST:PORT")


def parse_external(url: str) -> int:
    """The port of an external ``sc://HOST:PORT`` endpoint; InputError if the URL is not one."""
    match = _EXTERNAL_URL.match(url)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise InputError(f"bad Spark Connect URL {url!r}: expected sc://HOST:PORT")
    return int(match.group("port"))
