"""The typed spine: the run model (nbflow.runs) and the task spec (nbflow.task_spec), no kernels.

States are the Jobs API's strings (checked against databricks-sdk's own enums), CellError and
TaskSpec survive JSON, and what the reports write from the model is unchanged JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from databricks.sdk.service import jobs as sdk_jobs
from nbformat import from_dict

from nbflow.errors import InputError
from nbflow.params import Param
from nbflow.plan import Plan, Task
from nbflow.report import read_prior_run, runs_get, summary, write_run_json
from nbflow.report_html import render
from nbflow.results import result_from_notebook, to_payload
from nbflow.runs import (
    CANCELED,
    EXCLUDED,
    FAILED,
    PENDING,
    SUCCEEDED,
    SUCCESS,
    Attempt,
    CellError,
    LifeCycleState,
    NotebookResult,
    PlanRun,
    ResultState,
    TaskRun,
    decide,
    job_result,
    task_state,
)
from nbflow.runtime.context import RunContext
from nbflow.task_spec import TaskSpec


def test_states_are_the_jobs_api_strings() -> None:
    assert {s.value for s in ResultState} == {s.value for s in sdk_jobs.RunResultState}
    assert {s.value for s in LifeCycleState} - {"UNKNOWN"} == {s.value for s in sdk_jobs.RunLifeCycleState}
    for state in [*ResultState, *LifeCycleState]:
        assert state.name == state.value  # so a member and its string hash alike (dict lookups)
        assert state == state.value and str(state) == state.value and f"{state}" == state.value
        assert json.dumps(state) == json.dumps(state.value)
        assert task_state(state.value) is state
    assert task_state("NOT_A_STATE_YET") is LifeCycleState.UNKNOWN
    assert {"SUCCESS": 1}[SUCCESS] == 1 and "EXCLUDED" in SUCCEEDED


def test_cell_error_round_trips_through_json() -> None:
    error = CellError(3, "ValueError", "bad row", ("Traceback", "ValueError: bad row"))
    assert CellError.from_json(json.loads(json.dumps(error.to_json()))) == error
    # Summaries (run.json, --json, child replies) carry no traceback, and read back without one.
    assert error.summary() == {"cell_index": 3, "ename": "ValueError", "evalue": "bad row"}
    assert CellError.from_json(error.summary()) == CellError(3, "ValueError", "bad row")
    assert CellError.from_json({"cell_index": None, "ename": "WorkerError", "evalue": "died"}).cell_index is None


def test_task_spec_round_trips_with_parameter_sources_and_context() -> None:
    context = RunContext(run_id="r1", project_dir="/p", dbfs_root="/p/.nbflow/dbfs", python="/usr/bin/python3",
                         engine="sail", job_task_values={"up": {"rows": 40}}, depth=2, redact_values=["s3cret"],
                         secret_env={"NBFLOW_SECRET__A__B": "x"})
    spec = TaskSpec(
        notebook="/p/etl.py", task_key="etl", timeout=12.5, output_path="/p/out/etl.ipynb",
        output_log="/p/out/etl.log", kernel_log="/p/out/etl.kernel.log", context=context,
        parameters={"n": Param(40, "task parameter"), "env": Param("prod", "job parameter"),
                    "flags": Param([1, {"a": None}], "api")},
    )
    back = TaskSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back == spec
    assert back.parameters["env"].source == "job parameter" and back.context.job_task_values == {"up": {"rows": 40}}
    assert spec.recorded_parameters()["n"] == {"value": 40, "source": "task parameter"}
    minimal = TaskSpec("/p/a.py")
    assert TaskSpec.from_json(minimal.to_json()) == minimal


@pytest.mark.parametrize("data", [None, [], {"notebook": 3}, {"notebook": "a.py", "parameters": {"x": 1}},
                                  {"notebook": "a.py", "context": {"depth": 1, "python": "p", "nope": 1},
                                   "timeout": "soon"}])
def test_a_bad_task_spec_is_an_input_error(data: object) -> None:
    with pytest.raises(InputError, match="task spec"):
        TaskSpec.from_json(data)


def test_task_spec_module_stays_light_for_kernels() -> None:
    # dbutils.notebook.run builds a spec inside a kernel: no plan models, papermill or scheduler.
    code = ("import sys, nbflow.task_spec, nbflow.runs; "
            "print(sorted(m for m in ('pydantic', 'papermill', 'nbformat', 'nbflow.scheduler', 'nbflow.plan') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _plan() -> Plan:
    return Plan(name="p", tasks=[Task(task_key="a", notebook="a.py"),
                                 Task(task_key="b", notebook="b.py", depends_on=["a"])])


def test_decide_and_job_result_take_enum_members_and_strings() -> None:
    assert decide("ALL_SUCCESS", [SUCCESS, EXCLUDED]) == (True, "")
    assert decide("ALL_SUCCESS", ["SUCCESS", "FAILED"]) == (False, "UPSTREAM_FAILED")
    plan = _plan()
    tasks = {"a": TaskRun(plan.tasks[0], 1, FAILED), "b": TaskRun(plan.tasks[1], 2, EXCLUDED)}
    assert tasks["a"].last is None and TaskRun(plan.tasks[0], 3).status is PENDING
    assert job_result(tasks, {"a": [], "b": ["a"]}) is ResultState.SUCCESS_WITH_FAILURES
    tasks["b"].status = CANCELED
    assert job_result(tasks, {"a": [], "b": ["a"]}) is CANCELED


def test_reports_write_plain_strings_and_a_repair_reads_them_back(tmp_path: Path) -> None:
    plan = _plan()
    error = CellError(0, "ZeroDivisionError", "division by zero", ("Traceback...",))
    result = NotebookResult(notebook="a.py", output=str(tmp_path / "a.ipynb"), status=SUCCESS, exit_value="7")
    tasks = {
        "a": TaskRun(plan.tasks[0], 11, SUCCESS, [Attempt(0, SUCCESS, 1000, 2000, None, result)]),
        "b": TaskRun(plan.tasks[1], 12, FAILED, [Attempt(0, FAILED, 2000, 2500, None, None, error)]),
    }
    run = PlanRun(plan, "r1", tmp_path, "sequential", tasks, 900, 2600, FAILED, {"env": "prod"})
    written = json.loads(write_run_json(run).read_text())
    assert written["state"]["result_state"] == "FAILED"
    b = written["tasks"][1]
    assert b["state"] == {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                          "state_message": "division by zero"}
    assert b["attempts"][0]["result_state"] == "FAILED"
    assert b["attempts"][0]["error"] == {"cell_index": 0, "ename": "ZeroDivisionError", "evalue": "division by zero"}
    data = summary(run)
    assert data["status"] == "FAILED" and type(data["status"]) is str
    assert data["tasks"][1]["error"] == error.summary() and type(data["tasks"][1]["status"]) is str
    assert json.loads(json.dumps(runs_get(run))) == written
    page = render([run], "t")
    assert "cell 0: ZeroDivisionError: division by zero" in page and "ResultState" not in page
    kept, parameters = read_prior_run(tmp_path, plan)
    assert parameters == {"env": "prod"} and list(kept) == ["a"]
    assert kept["a"].status is SUCCESS and kept["a"].attempts[0].status is SUCCESS


def test_the_notebook_payload_keeps_the_traceback_and_reads_back_typed() -> None:
    error = CellError(2, "KeyError", "'x'", ("Traceback", "KeyError: 'x'"))
    result = NotebookResult(notebook="n.py", output="/o/n.ipynb", status=FAILED, error=error, run_id="r")
    payload = to_payload(result)
    assert "output" not in payload and payload["version"] == 1 and payload["status"] == "FAILED"
    assert payload["error"] == {"cell_index": 2, "ename": "KeyError", "evalue": "'x'",
                                "traceback": ["Traceback", "KeyError: 'x'"]}
    nb = {"metadata": {"nbflow": json.loads(json.dumps(payload))}, "cells": []}
    back = result_from_notebook(from_dict(nb), "/o/n.ipynb")
    assert back.status is FAILED and back.error == error and back.output == "/o/n.ipynb"
