"""``nbflow cluster``: start, stop and look at the project's local Spark Connect server."""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from .. import pool_client
from ..cluster import delta_jars
from ..cluster import server as cluster_mod
from ..cluster.state import ClusterState
from ..errors import ClusterStateDamaged, NbflowError
from ..pool_service import DEFAULT_AUTOTERMINATION_MINUTES
from ..project import cluster_log_file, project_dir
from .commands import short_help


def _describe(state: Any) -> str:
    return f"{state.engine} cluster at {state.url}" + ("" if state.pid is None else f" (pid {state.pid})")


def _versions(engine: str, delta: bool) -> str:
    """The tested set the engine runs: pyspark, and Delta / Scala (spark) or pysail (sail)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    if engine == "sail":
        return f"pysail {version('pysail')}, pyspark {version('pyspark')} (client)"
    if engine == "spark":
        shown = f"pyspark {version('pyspark')} (Spark {delta_jars.SPARK_LINE}), Scala {delta_jars.SCALA_VERSION}"
        return shown + (f", delta-spark {delta_jars.DELTA_VERSION}" if delta else ", no Delta")
    return f"pyspark {version('pyspark')} (client)"


def _details(state: Any) -> None:
    click.echo(f"  engine choice: {state.reason}")
    click.echo(f"  Delta: {'yes' if state.delta else 'no'}")
    click.echo(f"  versions: {_versions(state.engine, state.delta)}")
    click.echo(f"  access: {state.access}")
    if state.pid is not None:
        click.echo(f"  warehouse: {state.warehouse}")
        click.echo(f"  log: {state.log}")


@click.group(short_help=short_help("cluster"))
def cluster() -> None:
    """The project's local cluster: one Spark Connect server that every notebook attaches to."""


@cluster.command()
@click.option("--engine", default="auto", show_default=True, metavar="auto|sail|spark|sc://HOST:PORT",
              help="sail (Rust, Delta built in), spark (JVM), an existing endpoint, or auto.")
@click.option("--port", type=click.IntRange(1, 65535), metavar="N",
              help="A plain TCP port on 127.0.0.1 [default: sail none (behind nbflow's gate), spark a free one].")
@click.option("--autotermination-minutes", type=click.FloatRange(min=0), metavar="N",
              help="Stop the cluster after N minutes without work; 0: never "
                   f"[default: NBFLOW_AUTOTERMINATION_MINUTES, else {DEFAULT_AUTOTERMINATION_MINUTES}].")
def start(engine: str, port: int | None, autotermination_minutes: float | None) -> None:
    """Start the cluster and its warm kernels, or show the ones already running."""
    begun = time.monotonic()
    called_at = datetime.now(timezone.utc)
    project = project_dir()
    state = cluster_mod.start(project, engine, port)
    if datetime.fromisoformat(state.started_at) < called_at:
        click.echo(f"already running: {_describe(state)}")
    elif state.pid is None:
        click.echo(f"recorded the {_describe(state)} (nbflow does not start or stop it)")
    else:
        click.echo(f"started the {_describe(state)} in {time.monotonic() - begun:.1f} s")
    if state.pid is not None and pool_client.enabled():
        if autotermination_minutes is not None and pool_client.service_process(project) is not None:
            pool_client.stop_service(project)  # restarted with the new setting
        if not pool_client.ensure_service(project, autotermination_minutes):
            click.echo(f"nbflow: warning: the warm kernels' pool service did not start (see {state.log})", err=True)
    _details(state)
    _pool_details(project)


@cluster.command()
def stop() -> None:
    """Stop the cluster (an external endpoint is only forgotten)."""
    project = project_dir()
    try:
        state, damaged = cluster_mod.status(project), False
    except ClusterStateDamaged:
        state, damaged = None, True
    # Servers the state file does not name (damaged or lost) are stopped too: say which.
    unnamed = cluster_mod.servers(project) if state is None else []
    stopped = cluster_mod.stop(project)
    pids = ", ".join(map(str, unnamed))
    if damaged:
        click.echo(f"stopped the server(s) of this project the damaged state file no longer named (pid {pids})"
                   if unnamed else "removed the damaged state file; no server of this project was running")
    elif unnamed:
        click.echo(f"stopped the server(s) of this project that no state file named (pid {pids})")
    elif not stopped or state is None:
        click.echo("no cluster was running")
    elif state.engine == "external":
        click.echo(f"forgot the external cluster {state.url}")
    else:
        click.echo(f"stopped the {_describe(state)}")


@cluster.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON, with running: true/false.")
def status(as_json: bool) -> None:
    """Show whether the cluster is running, its engine, URL and why that engine."""
    state = cluster_mod.status(project_dir())
    if as_json:
        if state is None:
            data: dict[str, Any] = dict.fromkeys(field for field in ClusterState.__dataclass_fields__)
        else:
            data = state.to_dict()
        pool = pool_client.status(project_dir()) if state is not None else None
        click.echo(json.dumps({"running": state is not None, **data, "pool": pool}, indent=2))
        return
    if state is None:
        click.echo("not running")
        return
    click.echo(f"running: {_describe(state)}, since {state.started_at}")
    _details(state)
    _pool_details(project_dir())


def _pool_details(project: Path) -> None:
    """The pool service's line: warm kernels, their memory, idle time and auto-termination."""
    pool = pool_client.status(project)
    if pool is None:
        click.echo("  warm kernels: none (no pool service runs; `nbflow cluster start` starts it)")
        return
    memory = "" if pool.get("idle_worker_mb") is None else f", {pool['idle_worker_mb']:.0f} MB per idle warm kernel"
    minutes = pool.get("autotermination_minutes") or 0
    stops = "never stops on its own" if not minutes else \
        f"stops after {minutes:g} minutes without work (idle {pool.get('idle_s', 0):.0f} s)"
    click.echo(f"  warm kernels: {pool['warm']} warm, {pool['busy']} busy, {pool['warming']} warming, "
               f"{pool['queued']} queued (size {pool['target']}, at rest {pool['base']}, at most {pool['limit']})"
               f"{memory}; pool service pid {pool['pid']}")
    click.echo(f"  auto-termination: {stops}")


@cluster.command()
@click.option("-n", "--lines", type=click.IntRange(min=1), default=50, show_default=True, metavar="LINES",
              help="How many lines from the end.")
def logs(lines: int) -> None:
    """Print the end of the cluster's server log (kept after it stops)."""
    path = cluster_log_file(project_dir())
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            tail = deque(handle, maxlen=lines)
    except FileNotFoundError:
        raise NbflowError(f"no cluster log at {path}: the cluster was never started here") from None
    click.echo("".join(tail), nl=False)


@cluster.command("install-delta")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="nbflow's cache folder to fill [default: NBFLOW_CACHE_DIR, else ~/.cache/nbflow].")
def install_delta(cache_dir: Path | None) -> None:
    """Fetch Delta Lake's jars for the spark engine ahead of its first start (CI images, offline machines).

    The pinned set (delta-spark for this pyspark, and what it needs that Spark lacks) comes from
    Maven Central, or the mirror NBFLOW_MAVEN_REPO names, each jar checked against its pinned SHA-1.
    """
    folder = delta_jars.jar_dir(cache=cache_dir)
    done = delta_jars.install(folder, delta_jars.repository(), announce=click.echo)
    size = sum(jar.stat().st_size for jar in done.jars) / 1e6
    if done.fetched:
        click.echo(f"fetched {done.fetched} jar(s), {done.fetched_bytes / 1e6:.1f} MB, in {done.seconds:.1f} s")
    click.echo(f"Delta Lake {delta_jars.DELTA_VERSION} for Spark {delta_jars.SPARK_LINE} (Scala "
               f"{delta_jars.SCALA_VERSION}): {len(done.jars)} jars, {size:.1f} MB in {folder}")
    if cache_dir is not None:
        click.echo(f"  the spark engine uses them with NBFLOW_CACHE_DIR={cache_dir}")
