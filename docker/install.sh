#!/usr/bin/env bash
# Install nbflow into PREFIX the way the docker image has it, then check that it works:
#   docker/install.sh PREFIX
#   PREFIX/            a virtualenv with nbflow and its dependencies (PREFIX/bin/nbflow)
#   PREFIX/cache/      nbflow's cache, holding Delta's jars: run with NBFLOW_CACHE_DIR=PREFIX/cache
# The Dockerfile's build is this script (plus apt-get for Java), and `make docker-check` runs it
# on the host into a temporary prefix, so what the image does is tested where no Docker runs.
# Needs Python >= 3.10 (PYTHON, default python3), Java 17+ on PATH, and PyPI and Maven Central
# (NBFLOW_MAVEN_REPO overrides the repository; pip's own settings are left alone).
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$(mkdir -p "$1" && cd "$1" && pwd)
source_tree=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
step() { echo "install.sh: $*" >&2; }

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "install.sh: $python is not Python >= 3.10" >&2
    exit 3
fi
if ! java_version=$(java -version 2>&1 | head -n 1) || ! [[ $java_version =~ \"(1[7-9]|[2-9][0-9])[.\"] ]]; then
    echo "install.sh: the JVM Spark engine needs Java 17 or later; java -version says: ${java_version:-nothing}" >&2
    exit 3
fi

work=$(mktemp -d)
smoke_project="$work/project"
cleanup() {
    # A failed smoke run must not leave its cluster server behind (it outlives the command).
    if [[ -d "$smoke_project/.nbflow" ]]; then
        (cd "$smoke_project" && "$prefix/bin/nbflow" cluster stop >/dev/null 2>&1) || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step "virtualenv at $prefix ($("$python" --version 2>&1))"
"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --upgrade pip

# A copy of what the package is built from: building in the source tree would leave build/ and
# *.egg-info there (and the image's source is a bind mount).
step "nbflow from $source_tree"
mkdir "$work/src"
cp -R "$source_tree/pyproject.toml" "$source_tree/README.md" "$source_tree/nbflow" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$prefix/bin/python" -m pip install --quiet "$work/src"

step "Delta's jars into $prefix/cache"
"$prefix/bin/nbflow" cluster install-delta --cache-dir "$prefix/cache"

# The smoke check: the JVM engine starts from that cache alone and runs Delta. HOME is a fresh
# folder and the repository URL a closed port, so neither ~/.cache, an Ivy cache nor a download
# can stand in for the jars this prefix holds.
step "smoke check: a notebook on --engine spark with a Delta table, offline"
mkdir -p "$smoke_project" "$work/home"
cat >"$smoke_project/smoke.py" <<'NOTEBOOK'
# Databricks notebook source
spark.sql("CREATE TABLE smoke USING delta AS SELECT 1 AS n")
detail = spark.sql("DESCRIBE DETAIL smoke").first()
assert detail.format == "delta", detail
assert spark.table("smoke").count() == 1
dbutils.notebook.exit("delta ok")
NOTEBOOK
(
    cd "$smoke_project"
    export HOME="$work/home" NBFLOW_CACHE_DIR="$prefix/cache" NBFLOW_MAVEN_REPO=http://127.0.0.1:9/closed
    unset NBFLOW_DELTA_JARS NBFLOW_DELTA_MAVEN NBFLOW_PROJECT_DIR
    "$prefix/bin/nbflow" --version
    "$prefix/bin/nbflow" run smoke.py --engine spark
    "$prefix/bin/nbflow" cluster stop
)
step "done: run $prefix/bin/nbflow with NBFLOW_CACHE_DIR=$prefix/cache"
