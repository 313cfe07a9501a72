"""Delta Lake's jars for the JVM engine: one pinned, tested set, fetched once into the user's cache.

The set is what Maven resolves for ``io.delta:delta-spark_2.13`` at :data:`DELTA_VERSION`, less the
jars the pyspark wheel already ships (Spark's own Hadoop, Parquet, Jackson, Scala...): delta-spark,
delta-storage, Delta Kernel and the Unity Catalog client it needs, and four small libraries Spark
lacks. Each jar is pinned by its SHA-1 as Maven Central publishes it, fetched over HTTPS from
Maven Central (``NBFLOW_MAVEN_REPO`` names a mirror), checked, and moved into place whole, so a
later start needs no network and a broken download is never used.

The cache is ``NBFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/nbflow``, else ``~/.cache/nbflow``; the
jars live in ``<cache>/jars/delta-<version>/``. A CI image or an air-gapped machine carries that
folder along (``nbflow cluster install-delta`` fills it ahead).

Delta Connect (delta-spark's Python ``DeltaTable`` over Spark Connect) needs a server plugin,
``delta-connect-server``, that is not part of this set: Maven Central's mirror here did not serve it
for any 4.x release (see DESIGN.md). nbflow's own ``DeltaTable`` runs on this engine as Delta SQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentFailure

# The tested set: pyspark 4.2 (pyproject's pin), Scala 2.13, Delta 4.4.0, the newest Delta release
# built for Spark 4.2 on Maven Central (its POM names spark-sql_2.13 4.2.0).
DELTA_VERSION = "4.4.0"
SPARK_LINE = "4.2"
SCALA_VERSION = "2.13"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Artifact:
    """One jar of the set, as Maven Central publishes it."""

    group: str
    name: str
    version: str
    sha1: str
    size: int

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.jar"

    def url(self, repo: str) -> str:
        return f"{repo.rstrip('/')}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.file_name}"

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"


# `mvn dependency:list` of io.delta:delta-spark_2.13:4.4.0 (runtime scope), less what pyspark 4.2's
# jars/ already holds at an equal or newer version; jackson-datatype-jdk8 taken at Spark's Jackson.
ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("io.delta", f"delta-spark_{SCALA_VERSION}", DELTA_VERSION,
             "c2ab26421b8de44a2161b5e0b7da7954049f1ca1", 9515916),
    Artifact("io.delta", "delta-storage", DELTA_VERSION, "a068e489ce20d7f79bc4ca2d3392f12adbb69ddd", 113863),
    Artifact("io.delta", "delta-kernel-api", DELTA_VERSION, "58b895b7000ed3d67551c30f1c83a39be11f590e", 2838619),
    Artifact("io.delta", "delta-kernel-defaults", DELTA_VERSION, "13f676570d3c8f2650c3e9a3142530c24720327f", 227185),
    Artifact("io.delta", "delta-kernel-unitycatalog", DELTA_VERSION, "4f5d11adea096407d41eb7e127c7911b027fdebf", 43048),
    Artifact("io.unitycatalog", "unitycatalog-hadoop", "0.6.0", "197bbc873cf0ad806b70896b607cc95e8c52e68b", 78389),
    Artifact("io.unitycatalog", "unitycatalog-client", "0.6.0", "ff00daaa50d591bbae9a94c200e2c0d23372b5f0", 564136),
    Artifact("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.21.2",
             "0222d829578930f27afa8d9b6842393824e2eb38", 36037),
    Artifact("javax.annotation", "javax.annotation-api", "1.3.2", "934c04d3cfef185a8008e7bf34331b79730a9d43", 26586),
    Artifact("commons-logging", "commons-logging", "1.3.0", "f5e064b541f5c5fbc5e4fb49c4e8cd4eabb3afd6", 70816),
)
TOTAL_BYTES = sum(a.size for a in ARTIFACTS)


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """nbflow's cache folder: ``NBFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/nbflow``, else ``~/.cache/nbflow``."""
    env = os.environ if env is None else env
    if env.get("NBFLOW_CACHE_DIR"):
        return Path(env["NBFLOW_CACHE_DIR"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "nbflow"


def jar_dir(env: Mapping[str, str] | None = None, cache: Path | None = None) -> Path:
    """Where the pinned set lives: ``<cache>/jars/delta-<version>``."""
    return (cache_root(env) if cache is None else cache) / "jars" / f"delta-{DELTA_VERSION}"


def repository(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("NBFLOW_MAVEN_REPO") or MAVEN_CENTRAL


def cached(folder: Path) -> list[Path] | None:
    """The set's jars in ``folder`` if every one is there whole (checked at download), else None."""
    jars = [folder / a.file_name for a in ARTIFACTS]
    try:
        if all(jar.stat().st_size == a.size for jar, a in zip(jars, ARTIFACTS, strict=True)):
            return jars
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: the jars, how many it fetched, the bytes and the seconds it took."""

    folder: Path
    jars: list[Path]
    fetched: int
    fetched_bytes: int
    seconds: float


def install(folder: Path, repo: str, announce: Callable[[str], None] | None = None) -> Installed:
    """Make ``folder`` hold the whole set, fetching what is missing from ``repo``.

    ``announce`` is called once, before the first download, with one line saying what is fetched
    and where. Several processes may install into one folder at once: a lock file serialises
    them, and the later ones find the jars there. Raises EnvironmentFailure naming the jar, the
    URL and the cause when a download fails or does not match its pinned SHA-1.
    """
    began = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    fetched = fetched_bytes = 0
    with _locked(folder):
        missing = [a for a in ARTIFACTS if not _whole(folder / a.file_name, a)]
        if missing and announce is not None:
            size = sum(a.size for a in missing) / 1e6
            announce(f"nbflow: fetching Delta Lake {DELTA_VERSION}'s jars for the spark engine ({len(missing)} files, "
                     f"{size:.1f} MB) from {repo} into {folder} (once; later starts use them offline)")
        for artifact in missing:
            _download(artifact, repo, folder)
            fetched += 1
            fetched_bytes += artifact.size
    jars = cached(folder)
    assert jars is not None  # every jar was checked in place under the lock
    return Installed(folder, jars, fetched, fetched_bytes, time.monotonic() - began)


def _whole(path: Path, artifact: Artifact) -> bool:
    try:
        return path.stat().st_size == artifact.size
    except OSError:
        return False


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(artifact: Artifact, repo: str, folder: Path) -> None:
    url = artifact.url(repo)
    what = f"could not fetch {artifact.coordinates} from {url}"
    digest = hashlib.sha1(usedforsecurity=False)
    handle, temporary = tempfile.mkstemp(prefix=f".{artifact.file_name}.", dir=folder)
    try:
        import urllib.error  # lazy: most commands download nothing
        import urllib.request  # lazy: as urllib.error

        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                raise EnvironmentFailure(f"{what}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise EnvironmentFailure(f"{what}: {reason}; set NBFLOW_MAVEN_REPO to a reachable mirror, or "
                                         f"copy a cache filled by `nbflow cluster install-delta` elsewhere") from None
        if digest.hexdigest() != artifact.sha1:
            raise EnvironmentFailure(f"{what}: its SHA-1 is {digest.hexdigest()}, not the pinned {artifact.sha1}")
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would keep an image's other users out of a shared cache
        os.replace(temporary, folder / artifact.file_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
