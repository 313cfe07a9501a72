"""Items run in a Databricks workspace (``pytest --nbflow --nbflow-target=databricks[:PROFILE]``),
through the remote adapter (:mod:`nbflow.remote`, the official databricks-sdk).

A plan is deployed as ``nbflow remote deploy`` does it (its notebooks uploaded, its cluster and
jobs created or updated, kept for the next run; ``nbflow remote destroy PLAN`` removes them) and
run with ``run-now``. A notebook is staged with its folder's notebooks as a one-task plan, deployed,
run, and removed from the workspace again. Results come back as the Jobs API gives them: state,
exit value (``get-output``), error message; no executed notebook.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import NbflowError
from ..remote.adapter import notebook_files
from ..remote.deploy import deploy_plan, destroy_deployment, run_job
from ..runs import NotebookResult, PlanRun

TASK = "notebook"


def run_plan_remote(plan_file: Path, mode: str, job_parameters: Mapping[str, str], profile: str | None,
                    timeout: float | None = None) -> PlanRun:
    """Deploy ``plan_file`` and run its ``mode`` job to its end; the run as a local PlanRun."""
    deploy_plan(plan_file, profile=profile)
    remote = run_job(plan_file, mode=mode, job_parameters=job_parameters, wait=True, timeout=timeout,
                     profile=profile)
    assert remote.plan_run is not None  # wait=True follows it to its end
    return remote.plan_run


def run_notebook_remote(path: Path, parameters: Mapping[str, Any], stage: Path, name: str,
                        profile: str | None, timeout: float | None = None) -> NotebookResult:
    """Run one notebook in the workspace as a one-task job (staged in ``stage``, plan ``name``)."""
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    folder = path.resolve().parent
    for notebook in notebook_files(folder):  # its neighbours too: %run and notebook.run find them
        target = stage / notebook.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(notebook, target)
    plan_file = stage / "plan.yaml"
    task: dict[str, Any] = {"task_key": TASK, "notebook": path.name,
                            "parameters": {str(k): str(v) for k, v in parameters.items()}}
    if timeout:
        task["timeout_seconds"] = int(timeout)
    plan_file.write_text(yaml.safe_dump({"name": name, "tasks": [task]}), encoding="utf-8")
    try:
        run = run_plan_remote(plan_file, "sequential", {}, profile)
    finally:
        with contextlib.suppress(NbflowError):  # best effort: what is left is named by the error
            destroy_deployment(plan_file, profile=profile)
    task_run = run.tasks[TASK]
    attempt = task_run.last
    result = attempt.result if attempt is not None and attempt.result is not None else None
    if result is None:
        result = NotebookResult(notebook=str(path), output=None, status=task_run.status)
    result.notebook, result.status = str(path), task_run.status
    if attempt is not None and attempt.error is not None:
        result.error = attempt.error
    return result
