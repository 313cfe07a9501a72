"""Fetching Delta's jars into nbflow's cache: from a real HTTP server standing for Maven, checked
against pinned SHA-1s, moved into place whole, once across concurrent installs, offline after."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbflow.cli.main import cli as nbflow_group
from nbflow.cluster import delta_jars
from nbflow.errors import EnvironmentFailure

from .conftest import cli


class _Repo(http.server.ThreadingHTTPServer):
    served: list[str]
    root: Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.served.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Repo]:
    """A Maven-layout repository on loopback serving small stand-ins for the pinned set."""
    root = tmp_path / "repo"
    artifacts = []
    for i, name in enumerate(("delta-spark_2.13", "delta-storage", "tiny-lib")):
        body = f"jar {i} ".encode() * (1000 * (i + 1))
        artifact = delta_jars.Artifact("io.example", name, "1.0", hashlib.sha1(body).hexdigest(), len(body))
        where = root / "io" / "example" / name / "1.0"
        where.mkdir(parents=True)
        (where / artifact.file_name).write_bytes(body)
        artifacts.append(artifact)
    monkeypatch.setattr(delta_jars, "ARTIFACTS", tuple(artifacts))
    server = _Repo(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.served, server.root = [], root
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(repo: _Repo) -> str:
    return f"http://127.0.0.1:{repo.server_address[1]}"


def test_install_fetches_the_set_once_and_later_uses_it_offline(repo: _Repo, tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "jars"
    said: list[str] = []
    done = delta_jars.install(folder, url(repo), announce=said.append)
    assert (done.fetched, len(done.jars)) == (3, 3)
    assert done.fetched_bytes == sum(a.size for a in delta_jars.ARTIFACTS)
    assert len(said) == 1 and "(3 files, " in said[0] and str(folder) in said[0]
    assert delta_jars.cached(folder) == done.jars
    assert all(jar.stat().st_mode & 0o777 == 0o644 for jar in done.jars)  # readable by an image's other users
    repo.shutdown()  # offline from here on
    again = delta_jars.install(folder, url(repo), announce=said.append)
    assert (again.fetched, again.jars, len(said)) == (0, done.jars, 1)  # nothing fetched, nothing said


def test_concurrent_installs_fetch_each_jar_once(repo: _Repo, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: delta_jars.install(folder, url(repo)), range(4)))
    assert sorted(r.fetched for r in results) == [0, 0, 0, 3]
    assert len(repo.served) == 3


def test_a_jar_that_does_not_match_its_pin_is_refused_and_never_left_in_place(repo: _Repo, tmp_path: Path) -> None:
    spark = delta_jars.ARTIFACTS[0]
    (repo.root / "io" / "example" / spark.name / "1.0" / spark.file_name).write_bytes(b"x" * spark.size)
    folder = tmp_path / "cache"
    with pytest.raises(EnvironmentFailure) as info:
        delta_jars.install(folder, url(repo))
    assert str(info.value).startswith(f"could not fetch io.example:delta-spark_2.13:1.0 from {url(repo)}/io/example/")
    assert f"not the pinned {spark.sha1}" in str(info.value)
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no torn or forged jar, no temporary file
    assert delta_jars.cached(folder) is None


def test_a_missing_jar_and_an_unreachable_repository_say_which_jar_and_where(repo: _Repo, tmp_path: Path) -> None:
    storage = delta_jars.ARTIFACTS[1]
    (repo.root / "io" / "example" / storage.name / "1.0" / storage.file_name).unlink()
    with pytest.raises(EnvironmentFailure, match=r"^could not fetch io\.example:delta-storage:1\.0 from .*: HTTP 404"):
        delta_jars.install(tmp_path / "a", url(repo))
    with pytest.raises(EnvironmentFailure, match=r"^could not fetch io\.example:delta-spark_2\.13:1\.0 from "
                                                 r"file:///nowhere/.*; set NBFLOW_MAVEN_REPO to a reachable mirror"):
        delta_jars.install(tmp_path / "b", "file:///nowhere")


def test_the_cache_folder_follows_nbflow_cache_dir_then_xdg(tmp_path: Path) -> None:
    assert delta_jars.cache_root({"NBFLOW_CACHE_DIR": str(tmp_path / "n"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "n"
    assert delta_jars.cache_root({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "nbflow"
    assert delta_jars.jar_dir({"NBFLOW_CACHE_DIR": "/c"}) == Path("/c/jars") / f"delta-{delta_jars.DELTA_VERSION}"


def test_the_pinned_set_names_delta_for_this_pyspark() -> None:
    from importlib import metadata

    spark_line = ".".join(metadata.version("pyspark").split(".")[:2])
    assert spark_line == delta_jars.SPARK_LINE  # a pyspark upgrade needs a Delta release built for it
    names = [a.name for a in delta_jars.ARTIFACTS]
    assert names[:2] == [f"delta-spark_{delta_jars.SCALA_VERSION}", "delta-storage"]
    assert all(len(a.sha1) == 40 and a.size > 0 for a in delta_jars.ARTIFACTS)


def test_install_delta_command_fills_the_named_cache_and_says_how_to_use_it(
    repo: _Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "ci-cache"
    monkeypatch.setenv("NBFLOW_MAVEN_REPO", url(repo))
    first = CliRunner().invoke(nbflow_group, ["cluster", "install-delta", "--cache-dir", str(cache)])
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    version = delta_jars.DELTA_VERSION
    assert lines[0].startswith(f"nbflow: fetching Delta Lake {version}'s jars") and url(repo) in lines[0]
    assert lines[1].startswith("fetched 3 jar(s)")
    assert lines[2].startswith(f"Delta Lake {version} for Spark {delta_jars.SPARK_LINE} (Scala 2.13): 3 jars")
    assert lines[3] == f"  the spark engine uses them with NBFLOW_CACHE_DIR={cache}"
    assert delta_jars.cached(delta_jars.jar_dir(cache=cache)) is not None
    again = CliRunner().invoke(nbflow_group, ["cluster", "install-delta", "--cache-dir", str(cache)])
    assert again.exit_code == 0 and "fetch" not in again.output  # already there: nothing fetched


def test_install_delta_offline_fails_in_one_line_with_exit_3(tmp_path: Path) -> None:
    failed = cli("cluster", "install-delta", "--cache-dir", str(tmp_path / "c"),
                 env={"NBFLOW_MAVEN_REPO": "file:///nowhere"})
    assert failed.returncode == 3
    assert failed.stderr.strip().startswith("nbflow: could not fetch io.delta:delta-spark_2.13:")
    assert len(failed.stderr.strip().splitlines()) == 1
