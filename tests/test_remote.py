"""``nbflow remote`` against ``nbflow serve``: the real databricks-sdk, over loopback HTTP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from nbflow.serve.server import WorkspaceServer

from .conftest import cli

NB = Path(__file__).parent / "plans" / "nb"
TOKEN = "dapi-remote-test"
PLAN = """\
name: remote_demo
parameters: {env: dev}
schedule: {quartz_cron_expression: "0 0 6 * * ?", timezone_id: Europe/Paris, pause_status: PAUSED}
cluster: {spark_version: 15.4.x-scala2.12, num_workers: 2, custom_tags: {team: data}}
tasks:
  - task_key: producer
    notebook: set_value.py
    parameters: {n: "3"}
  - task_key: consumer
    notebook: use_value.py
    depends_on: [producer]
    parameters: {from_ref: "{{tasks.producer.values.rows}}"}
  - task_key: other
    notebook: set_value.py
"""
ORCHESTRATOR = """\
# Databricks notebook source
dbutils.notebook.exit(dbutils.notebook.run("./set_value", 60, {"n": "5"}))
"""


@pytest.fixture
def workspace(project: Path) -> Iterator[tuple[WorkspaceServer, dict[str, str], Path]]:
    server = WorkspaceServer(project, TOKEN)
    server.start()
    folder = project / "plan"
    folder.mkdir()
    for name in ("set_value.py", "use_value.py"):
        shutil.copy(NB / name, folder / name)
    for mode in ("sequential", "parallel"):
        (folder / f"orchestrate_{mode}.py").write_text(ORCHESTRATOR)
    (folder / "plan.yaml").write_text(PLAN)
    env = {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": TOKEN}
    yield server, env, folder / "plan.yaml"
    server.stop()


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.serve
def test_deploy_run_compare_schedule_and_destroy(workspace: tuple[WorkspaceServer, dict[str, str], Path]) -> None:
    server, env, plan = workspace
    first = cli("remote", "deploy", str(plan), "--form", "both", env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    deployed = json.loads(first.stdout)
    assert set(deployed["jobs"]) == {"sequential", "parallel", "orchestrator-sequential", "orchestrator-parallel"}
    assert "uploaded set_value.py -> /Shared/nbflow/remote_demo/set_value" in first.stderr
    again = cli("remote", "deploy", str(plan), "--schedule", env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["jobs"] == deployed["jobs"]  # updated by name, not duplicated
    assert "updated job 'remote_demo [sequential]'" in again.stderr
    w = WorkspaceClient(host=server.url, token=TOKEN, auth_type="pat")
    job = w.jobs.get(deployed["jobs"]["sequential"])
    assert job.settings and job.settings.schedule and job.settings.schedule.timezone_id == "Europe/Paris"
    chain = {t.task_key: [d.task_key for d in t.depends_on or []] for t in job.settings.tasks or []}
    # Sequential: a chain in the order a local sequential run takes (dependencies first, then file order).
    assert chain == {"producer": [], "other": ["producer"], "consumer": ["other"]}
    cluster = w.clusters.get(deployed["cluster_id"])
    assert cluster.cluster_name == "nbflow-remote_demo"
    # The plan's cluster spec, the rest chosen from what the workspace offers.
    assert (cluster.spark_version, cluster.num_workers, cluster.node_type_id) == ("15.4.x-scala2.12", 2, "local")
    assert cluster.custom_tags == {"team": "data"}

    ran = cli("remote", "run", str(plan), "--mode", "parallel", "--json", env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["status"] == "SUCCESS"
    assert {t["task_key"]: t["exit_value"] for t in summary["tasks"]} == {
        "producer": "set", "consumer": json.dumps({"ref": "30", "get": 30, "env": "dev"}), "other": "set"}
    folder = Path(summary["output_dir"])
    assert json.loads((folder / "run.json").read_text())["state"]["result_state"] == "SUCCESS"
    assert "<svg" in (folder / "report.html").read_text()
    orchestrated = cli("remote", "run", str(plan), "--form", "orchestrator", "--json", env=env, timeout=300)
    assert orchestrated.returncode == 0, orchestrated.stderr
    assert json.loads(orchestrated.stdout)["tasks"][0]["exit_value"] == "set"
    # The orchestrator's dbutils.notebook.run child is a WORKFLOW_RUN of its own.
    [child] = list(w.jobs.list_runs(run_type=jobs.RunType.WORKFLOW_RUN))
    assert child.run_name == "set_value" and child.state and child.state.result_state == jobs.RunResultState.SUCCESS
    assert w.jobs.get_run_output(child.run_id).notebook_output.result == "set"  # type: ignore[union-attr]

    compared = cli("remote", "compare", str(plan), "--with-local", "--json", env=env, timeout=600)
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout)["runs"]
    assert [r["mode"] for r in rows] == ["remote sequential", "remote parallel", "local sequential",
                                         "local parallel"]
    assert all(r["status"] == "SUCCESS" for r in rows)
    assert rows[0]["speedup"] == rows[2]["speedup"] == 1.0 and rows[1]["speedup"] > 0 and rows[3]["speedup"] > 0

    gone = cli("remote", "destroy", str(plan), env=env, timeout=120)
    assert gone.returncode == 0, gone.stderr
    assert not list(w.jobs.list()) and not list(w.clusters.list())
    assert not any(o.path == "/Shared/nbflow/remote_demo" for o in w.workspace.list("/Shared/nbflow"))
    for proc in (first, again, ran, orchestrated, compared, gone):
        assert TOKEN not in proc.stdout + proc.stderr  # the token is never printed


@pytest.mark.serve
def test_remote_errors_are_one_line(workspace: tuple[WorkspaceServer, dict[str, str], Path]) -> None:
    _, env, plan = workspace
    not_deployed = cli("remote", "run", str(plan), env=env)
    assert not_deployed.returncode == 2 and "is not deployed from this project" in not_deployed.stderr
    refused = cli("remote", "deploy", str(plan), env={**env, "DATABRICKS_TOKEN": "wrong"})
    assert refused.returncode == 3
    assert "PERMISSION_DENIED: Invalid access token." in refused.stderr and "Traceback" not in refused.stderr


def test_an_api_error_becomes_one_line_naming_the_call() -> None:
    from databricks.sdk.errors.platform import TooManyRequests

    from nbflow.errors import RemoteError
    from nbflow.remote.adapter import api_call

    # What is left when the SDK's own retries (Retry-After on 429/503) give up.
    with pytest.raises(RemoteError, match=r"^jobs run-now 7: REQUEST_LIMIT_EXCEEDED: slow down$"), \
            api_call("jobs run-now 7"):
        raise TooManyRequests("slow down", error_code="REQUEST_LIMIT_EXCEEDED")
