"""Which cluster engine runs a project's cluster, and Delta's jars for the JVM one.

Cluster engines: ``sail`` (pysail, a Rust engine, Delta built in), ``spark`` (the JVM Spark Connect
server shipped in the pyspark wheel, Delta when delta-spark's jars are at hand), an external
``sc://host:port`` endpoint (recorded, never started or stopped), and ``auto``: ``spark`` with
Delta when the jars are found locally, else ``sail``. ``auto`` decides from local files only.
(The *cluster* engine, not the papermill engine :mod:`nbflow.engine` that runs a notebook.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

CLUSTER_ENGINES = ("auto", "sail", "spark")
# Used with NBFLOW_DELTA_MAVEN=1 unless NBFLOW_DELTA_VERSION names another; it must be a Delta
# release built for the pyspark in use (Spark 4.2). Not verified here: no Maven access.
DELTA_MAVEN_VERSION = "4.4.1"
DELTA_CONFS = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.connect.extensions.relation.classes=org.apache.spark.sql.connect.delta.DeltaRelationPlugin",
    "spark.connect.extensions.command.classes=org.apache.spark.sql.connect.delta.DeltaCommandPlugin",
)
# Delta artifacts for Spark 4.2 / Scala 2.13: plain names (delta-spark_2.13-4.x.y.jar), names with
# the Spark suffix Delta uses since 4.1 (delta-spark_4.2_2.13-...), and Ivy cache names
# (io.delta_delta-spark_2.13-...). delta-connect-common is taken along when present.
_DELTA_ARTIFACTS = {
    "delta-spark": r"delta-spark_(?:4\.2_)?2\.13",
    "delta-storage": r"delta-storage",
    "delta-connect-server": r"delta-connect-server_(?:4\.2_)?2\.13",
}
_DELTA_OPTIONAL = {"delta-connect-common": r"delta-connect-common_(?:4\.2_)?2\.13"}
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


def find_delta_jars(env: Mapping[str, str] | None = None, home: Path | None = None) -> tuple[list[Path] | None, str]:
    """Delta's jars for the JVM engine, found on local disk only, and where (or why not).

    Looks in the directory ``NBFLOW_DELTA_JARS`` names when it is set (and only there), else in
    the Ivy caches ``~/.ivy2.5.2/jars`` and ``~/.ivy2/jars``. Needs delta-spark_2.13,
    delta-storage and delta-connect-server_2.13 of one 4.x version (the newest complete one wins).
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    named = env.get("NBFLOW_DELTA_JARS")
    folders = [Path(named).expanduser()] if named else [home / ".ivy2.5.2" / "jars", home / ".ivy2" / "jars"]
    problems = []
    for folder in folders:
        jars, problem = _delta_jars_in(folder)
        if jars:
            return jars, str(folder)
        problems.append(problem)
    if named:
        return None, f"NBFLOW_DELTA_JARS={named}: {problems[0]}"
    return None, f"NBFLOW_DELTA_JARS unset, none in {' or '.join(str(f) for f in folders)}"


def _delta_jars_in(folder: Path) -> tuple[list[Path] | None, str]:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".jar"))
    except OSError:
        return None, "not a readable directory"
    found: dict[str, dict[str, Path]] = {}  # version -> artifact -> jar
    for artifact, pattern in {**_DELTA_ARTIFACTS, **_DELTA_OPTIONAL}.items():
        regex = re.compile(rf"^(?:io\.delta_)?{pattern}-{_VERSION}\.jar$")
        for name in names:
            match = regex.match(name)
            if match:
                found.setdefault(match.group(1), {})[artifact] = folder / name
    complete = [v for v, jars in found.items() if all(a in jars for a in _DELTA_ARTIFACTS)]
    if not complete:
        return None, f"no complete set of {', '.join(_DELTA_ARTIFACTS)} 4.x jars (Scala 2.13) of one version"
    best = max(complete, key=_version_key)
    return [found[best][a] for a in (*_DELTA_ARTIFACTS, *_DELTA_OPTIONAL) if a in found[best]], ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def delta_spark_args(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[str]:
    """spark-submit arguments that give the JVM Spark Connect server Delta; [] when Delta is not at hand.

    With ``NBFLOW_DELTA_MAVEN=1``: ``--packages`` (Spark resolves the jars from Maven Central into
    its Ivy cache, so a later offline ``auto`` finds them). Otherwise ``--jars`` with the jars
    :func:`find_delta_jars` finds. Either way, the Delta session extension, catalog and Delta
    Connect plugins are set with ``--conf``.
    """
    env = os.environ if env is None else env
    if env.get("NBFLOW_DELTA_MAVEN") == "1":
        version = env.get("NBFLOW_DELTA_VERSION") or DELTA_MAVEN_VERSION
        jars_args = ["--packages", f"io.delta:delta-spark_2.13:{version},io.delta:delta-connect-server_2.13:{version}"]
    else:
        jars, _ = find_delta_jars(env, home)
        if not jars:
            return []
        jars_args = ["--jars", ",".join(str(jar) for jar in jars)]
    confs = [arg for conf in DELTA_CONFS for arg in ("--conf", conf)]
    return [*jars_args, *confs]


def choose_engine(cluster_engine: str = "auto", env: Mapping[str, str] | None = None,
                  home: Path | None = None) -> EngineChoice:
    """Resolve ``auto``/``sail``/``spark``/``sc://host:port`` without touching the network."""
    env = os.environ if env is None else env
    if cluster_engine.startswith("sc://"):
        parse_external(cluster_engine)
        return EngineChoice("external", False, f"external Spark Connect endpoint {cluster_engine}: nbflow neither "
                            "starts nor stops it, and does not know whether it has Delta", url=cluster_engine)
    check_engine(cluster_engine)
    if cluster_engine == "sail":
        return EngineChoice("sail", True, "engine sail requested (Delta built in)")
    args = tuple(delta_spark_args(env, home))
    if env.get("NBFLOW_DELTA_MAVEN") == "1":
        where = "Delta from Maven (NBFLOW_DELTA_MAVEN=1)"
    else:
        jars, where = find_delta_jars(env, home)
        where = f"Delta jars from {where}" if jars else f"no Delta jars ({where})"
    if cluster_engine == "spark":
        return EngineChoice("spark", bool(args), f"engine spark requested; {where}", spark_args=args)
    if args:
        return EngineChoice("spark", True, f"auto: {where}, so the JVM Spark engine with Delta", spark_args=args)
    return EngineChoice("sail", True, f"auto: {where}, so sail (Delta built in)")


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
