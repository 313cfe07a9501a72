"""``nbflow serve``'s Workspace API, driven by the real ``databricks-sdk`` over loopback HTTP."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as sdk_errors
from databricks.sdk.service import jobs
from databricks.sdk.service.compute import State
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

from nbflow.serve.server import WorkspaceServer

SAMPLES = Path(__file__).parent.parent / "sample_notebooks"
TOKEN = "dapi-test-token"


@pytest.fixture
def server(project: Path) -> Iterator[WorkspaceServer]:
    srv = WorkspaceServer(project, TOKEN)
    srv.start()
    yield srv
    srv.stop()


def client(server: WorkspaceServer, token: str = TOKEN) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=token, auth_type="pat")


@pytest.mark.serve
def test_upload_list_export_and_delete_notebooks(server: WorkspaceServer) -> None:
    w = client(server)
    w.workspace.mkdirs("/Shared/nbflow/demo")
    source = (SAMPLES / "setup.py").read_bytes()
    w.workspace.import_("/Shared/nbflow/demo/setup", content=base64.b64encode(source).decode(),
                        format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    ipynb = (SAMPLES / "worker_2_customer_ltv.ipynb").read_bytes()
    w.workspace.upload("/Shared/nbflow/demo/worker_2", io.BytesIO(ipynb), format=ImportFormat.JUPYTER)
    listed = {o.path: o for o in w.workspace.list("/Shared/nbflow/demo")}
    assert set(listed) == {"/Shared/nbflow/demo/setup", "/Shared/nbflow/demo/worker_2"}
    assert listed["/Shared/nbflow/demo/setup"].object_type == ObjectType.NOTEBOOK
    assert listed["/Shared/nbflow/demo/setup"].language == Language.PYTHON
    assert w.workspace.get_status("/Shared/nbflow").object_type == ObjectType.DIRECTORY
    # Round trips: source comes back as it went in; Jupyter exported as SOURCE is a source notebook.
    assert base64.b64decode(w.workspace.export("/Shared/nbflow/demo/setup").content or "") == source
    as_source = w.workspace.download("/Shared/nbflow/demo/worker_2", format=ExportFormat.SOURCE).read()
    assert as_source.startswith(b"# Databricks notebook source") and b"# COMMAND ----------" in as_source
    # AUTO: a .py with the source header is a notebook, its extension removed.
    w.workspace.upload("/Shared/nbflow/demo/hello.py", source, format=ImportFormat.AUTO)
    assert w.workspace.get_status("/Shared/nbflow/demo/hello").object_type == ObjectType.NOTEBOOK
    with pytest.raises(sdk_errors.ResourceConflict):  # RESOURCE_ALREADY_EXISTS without overwrite
        w.workspace.upload("/Shared/nbflow/demo/worker_2", io.BytesIO(ipynb), format=ImportFormat.JUPYTER)
    with pytest.raises(sdk_errors.BadRequest, match="not empty"):
        w.workspace.delete("/Shared/nbflow")
    w.workspace.delete("/Shared/nbflow", recursive=True)
    with pytest.raises(sdk_errors.NotFound):
        w.workspace.get_status("/Shared/nbflow/demo/setup")


@pytest.mark.serve
def test_state_survives_a_restart_and_paths_stay_inside(project: Path, server: WorkspaceServer) -> None:
    w = client(server)
    w.workspace.mkdirs("/Users/me")
    w.workspace.upload("/Users/me/nb", b"print(1)\n", format=ImportFormat.SOURCE, language=Language.PYTHON)
    with pytest.raises(sdk_errors.BadRequest, match=r"must not contain '\.\.'"):
        w.workspace.import_("/Users/me/../../../etc/x", content=base64.b64encode(b"x").decode(),
                            format=ImportFormat.RAW)
    with pytest.raises(sdk_errors.BadRequest, match="not absolute"):
        w.workspace.get_status("relative/path")
    with pytest.raises(sdk_errors.NotFound, match="parent folder"):
        w.workspace.upload("/Nowhere/nb", b"print(1)\n", format=ImportFormat.SOURCE, language=Language.PYTHON)
    again = WorkspaceServer(project, TOKEN)
    again.start()
    try:
        exported = client(again).workspace.download("/Users/me/nb").read()
    finally:
        again.stop()
    assert exported == b"# Databricks notebook source\nprint(1)\n"  # plain Python became a source notebook
    assert not list(project.parent.glob("etc*"))


@pytest.mark.serve
def test_a_missing_or_wrong_token_is_refused(server: WorkspaceServer) -> None:
    with pytest.raises(sdk_errors.PermissionDenied, match="Invalid access token"):
        client(server, "wrong").workspace.get_status("/")
    import requests

    reply = requests.get(f"{server.url}/api/2.0/workspace/get-status", params={"path": "/"}, timeout=10)
    assert reply.status_code == 401 and reply.json()["error_code"] == "UNAUTHENTICATED"
    reply = requests.get(f"{server.url}/api/2.0/nothing/here", headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=10)
    assert reply.status_code == 404 and reply.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.mark.serve
def test_the_serve_command_prints_its_token_once_and_stops_on_kill(project: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.match(r"export DATABRICKS_HOST=(\S+) DATABRICKS_TOKEN=(\S+)", line)
    assert found, line
    w = WorkspaceClient(host=found.group(1), token=found.group(2), auth_type="pat")
    assert w.workspace.get_status("/").object_type == ObjectType.DIRECTORY
    proc.send_signal(signal.SIGTERM)  # `kill`: stops as Ctrl-C does
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in err
    assert found.group(2) not in err and found.group(2) not in out  # printed once, on stdout only


@pytest.mark.spark
@pytest.mark.serve
def test_clusters_go_pending_running_terminated_on_the_local_engine(server: WorkspaceServer) -> None:
    w = client(server)
    assert "16.4.x-scala2.12" in {v.key for v in w.clusters.spark_versions().versions or []}
    details = w.clusters.create_and_wait(cluster_name="nbflow-test", spark_version="16.4.x-scala2.12",
                                         node_type_id="local", num_workers=0, autotermination_minutes=30,
                                         timeout=datetime.timedelta(seconds=120))
    assert details.state == State.RUNNING and details.cluster_name == "nbflow-test"
    assert [c.cluster_id for c in w.clusters.list()] == [details.cluster_id]
    w.clusters.delete_and_wait(details.cluster_id)
    assert w.clusters.get(details.cluster_id).state == State.TERMINATED
    w.clusters.start(details.cluster_id).result(timeout=datetime.timedelta(seconds=120))
    w.clusters.permanent_delete(details.cluster_id)
    with pytest.raises(sdk_errors.ResourceDoesNotExist):  # 400 "does not exist", remapped by the SDK
        w.clusters.get(details.cluster_id)
    with pytest.raises(sdk_errors.InvalidParameterValue, match="autotermination_minutes"):
        w.clusters.create(spark_version="16.4.x-scala2.12", node_type_id="local", autotermination_minutes=5)


PLAN_NB = Path(__file__).parent / "plans" / "nb"


def upload(w: WorkspaceClient, folder: str, *names: str) -> None:
    w.workspace.mkdirs(folder)
    for name in names:
        w.workspace.upload(f"{folder}/{name}", (PLAN_NB / f"{name}.py").read_bytes(), format=ImportFormat.SOURCE,
                           language=Language.PYTHON, overwrite=True)


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.serve
def test_a_job_runs_its_task_graph_with_values_and_outputs(server: WorkspaceServer) -> None:
    w = client(server)
    upload(w, "/Shared/t", "set_value", "use_value", "boom")
    job = w.jobs.create(
        name="values", parameters=[jobs.JobParameterDefinition(name="env", default="dev")],
        tasks=[
            jobs.Task(task_key="producer", notebook_task=jobs.NotebookTask(
                notebook_path="/Shared/t/set_value", base_parameters={"n": "4"})),
            jobs.Task(task_key="consumer", depends_on=[jobs.TaskDependency(task_key="producer")],
                      notebook_task=jobs.NotebookTask(notebook_path="/Shared/t/use_value", base_parameters={
                          "from_ref": "{{tasks.producer.values.rows}}/{{job.parameters.env}}"})),
            jobs.Task(task_key="fails", notebook_task=jobs.NotebookTask(notebook_path="/Shared/t/boom")),
        ])
    run = w.jobs.run_now_and_wait(job.job_id, job_parameters={"env": "prod"},
                                  timeout=datetime.timedelta(seconds=180))
    assert run.state and run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.FAILED  # "fails" is a leaf
    states = {t.task_key: t.state.result_state for t in run.tasks or [] if t.state}
    assert states == {"producer": jobs.RunResultState.SUCCESS, "consumer": jobs.RunResultState.SUCCESS,
                      "fails": jobs.RunResultState.FAILED}
    consumer = next(t for t in run.tasks or [] if t.task_key == "consumer")
    output = w.jobs.get_run_output(consumer.run_id)
    assert json.loads(output.notebook_output.result) == {"ref": "40/prod", "get": 40, "env": "prod"}
    failed = next(t for t in run.tasks or [] if t.task_key == "fails")
    assert "boom" in (w.jobs.get_run_output(failed.run_id).error or "")
    with pytest.raises(sdk_errors.InvalidParameterValue, match="multiple tasks"):
        w.jobs.get_run_output(run.run_id)
    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [run.run_id]
    with pytest.raises(sdk_errors.ResourceDoesNotExist):
        w.jobs.get(job_id=987654)
    with pytest.raises(sdk_errors.InvalidParameterValue, match="dependency cycle"):
        w.jobs.create(name="cycle", tasks=[
            jobs.Task(task_key="a", depends_on=[jobs.TaskDependency(task_key="b")],
                      notebook_task=jobs.NotebookTask(notebook_path="/Shared/t/boom")),
            jobs.Task(task_key="b", depends_on=[jobs.TaskDependency(task_key="a")],
                      notebook_task=jobs.NotebookTask(notebook_path="/Shared/t/boom"))])
    w.jobs.delete(job.job_id)
    assert not list(w.jobs.list(name="values"))


@pytest.mark.kernel
@pytest.mark.serve
def test_runs_can_be_cancelled_and_concurrent_runs_are_skipped(server: WorkspaceServer) -> None:
    w = client(server)
    upload(w, "/Shared/t", "nap")
    job = w.jobs.create(name="nap", max_concurrent_runs=1, queue=jobs.QueueSettings(enabled=False),
                        tasks=[jobs.Task(task_key="nap", notebook_task=jobs.NotebookTask(
                            notebook_path="/Shared/t/nap"))])
    first = w.jobs.run_now(job.job_id).response.run_id
    skipped = w.jobs.run_now(job.job_id).result(timeout=datetime.timedelta(seconds=30))
    assert skipped.state and skipped.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    while w.jobs.get_run(first).state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:  # type: ignore[union-attr]
        assert datetime.datetime.now() < deadline
    cancelled = w.jobs.cancel_run_and_wait(first, timeout=datetime.timedelta(seconds=90))
    assert cancelled.state and cancelled.state.result_state == jobs.RunResultState.CANCELED


@pytest.mark.parametrize(("quartz", "after", "expected"), [
    ("0 15 22 ? * 2-6", "2026-11-22T06:00:00+00:00", "2026-11-23T21:15:00+00:00"),  # Mon-Fri, Paris time
    ("0 0 12 ? * 6#3", "2026-11-22T06:00:00+00:00", "2026-12-18T11:00:00+00:00"),  # third Friday
    ("0 0 9 1 * ? 2028", "2026-11-22T06:00:00+00:00", "2028-01-01T08:00:00+00:00"),  # a year field
])
def test_quartz_schedules_fire_at_their_time(quartz: str, after: str, expected: str) -> None:
    from nbflow.serve.schedules import _next_time

    fire = _next_time((quartz, "Europe/Paris"), datetime.datetime.fromisoformat(after))
    assert fire == datetime.datetime.fromisoformat(expected)


@pytest.mark.serve
@pytest.mark.kernel  # the schedule's runs start the server's workers and their kernels,
@pytest.mark.spark  # which attach Spark, so the project's cluster starts
def test_an_unpaused_schedule_starts_runs_and_a_paused_one_does_not(server: WorkspaceServer) -> None:
    w = client(server)
    upload(w, "/Shared/t", "set_value")
    task = jobs.Task(task_key="t", notebook_task=jobs.NotebookTask(notebook_path="/Shared/t/set_value"))
    every_2s = "*/2 * * * * ?"
    live = w.jobs.create(name="live", tasks=[task], schedule=jobs.CronSchedule(
        quartz_cron_expression=every_2s, timezone_id="UTC", pause_status=jobs.PauseStatus.UNPAUSED))
    paused = w.jobs.create(name="paused", tasks=[task], schedule=jobs.CronSchedule(
        quartz_cron_expression=every_2s, timezone_id="UTC", pause_status=jobs.PauseStatus.PAUSED))
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    while not list(w.jobs.list_runs(job_id=live.job_id)):
        assert datetime.datetime.now() < deadline, "the schedule never fired"
    [first] = list(w.jobs.list_runs(job_id=live.job_id))
    assert first.trigger == jobs.TriggerType.PERIODIC
    w.jobs.update(live.job_id, new_settings=jobs.JobSettings(schedule=jobs.CronSchedule(
        quartz_cron_expression=every_2s, timezone_id="UTC", pause_status=jobs.PauseStatus.PAUSED)))
    w.jobs.get_run(first.run_id)
    assert not list(w.jobs.list_runs(job_id=paused.job_id))
