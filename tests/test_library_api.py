"""The Python API: ``nbflow.run_plan`` (a plan file or a Plan built in code; selection, job
parameters, repair, events) and the lazily imported public names of ``nbflow``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nbflow
from nbflow import InputError, Plan, PlanRun, TaskRun, run_plan
from nbflow.plan import PlanError

PLANS = Path(__file__).parent / "plans"


# -- refused before anything runs --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "mode 'fast': use sequential or parallel"),
        ({"only": ["ghost"]}, "no task 'ghost' in plan 'values' (tasks: producer, consumer)"),
        ({"from_task": "ghost"}, "no task 'ghost' in plan 'values'"),
        ({"job_parameters": {"nope": 1}},
         "job parameter 'nope': plan 'values' has no job parameter 'nope' (it has: env)"),
    ],
)
def test_bad_arguments_are_input_errors_and_nothing_runs(kwargs: dict[str, object], message: str,
                                                         project: Path) -> None:
    with pytest.raises(InputError) as caught:
        run_plan(PLANS / "values.yaml", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert not (project / "processed").exists()


def test_repairing_a_folder_that_holds_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--repair .*: not the folder of a plan run"):
        run_plan(PLANS / "values.yaml", repair=tmp_path)


def test_a_plan_built_in_code_is_checked_as_a_plan_file_is(tmp_path: Path) -> None:
    plan = Plan.model_validate({"name": "loop", "tasks": [
        {"task_key": "a", "notebook": "ok.py", "depends_on": ["b"]},
        {"task_key": "b", "notebook": "missing.py", "depends_on": ["a"]}]})
    with pytest.raises(PlanError) as caught:
        run_plan(plan, base_dir=PLANS / "nb")
    problems = caught.value.problems
    assert any("dependency cycle: " in p for p in problems), problems
    assert any(p.startswith("plan 'loop': tasks[1].notebook: notebook not found: missing.py") for p in problems)


# -- runs ----------------------------------------------------------------------------------------
@pytest.mark.kernel
def test_run_plan_runs_a_plan_built_in_code_and_reports_its_events(tmp_path: Path) -> None:
    plan = Plan.model_validate({"name": "in-code", "parameters": {"env": "dev"}, "tasks": [
        {"task_key": "producer", "notebook": "set_value.py", "parameters": {"n": "2"}},
        {"task_key": "consumer", "notebook": "use_value.py", "depends_on": ["producer"],
         "parameters": {"from_ref": "{{tasks.producer.values.rows}}/{{job.parameters.env}}"}},
        {"task_key": "left_out", "notebook": "ok.py"}]})
    started: list[list[str]] = []
    events: list[tuple[str, str]] = []

    def on_start(run: PlanRun) -> None:
        started.append([f"{k}:{t.status}" for k, t in run.tasks.items()])

    def on_event(event: str, task_run: TaskRun) -> None:
        events.append((event, task_run.task.task_key))

    run = run_plan(plan, base_dir=PLANS / "nb", only=["producer", "consumer"], job_parameters={"env": "prod"},
                   output_dir=tmp_path / "out", on_start=on_start, on_event=on_event)
    assert run.result_state == "SUCCESS" and run.output_dir == (tmp_path / "out").resolve()
    assert started == [["producer:PENDING", "consumer:PENDING"]]
    assert events == [("started", "producer"), ("finished", "producer"), ("started", "consumer"),
                      ("finished", "consumer")]
    consumer = run.tasks["consumer"].last
    assert consumer is not None and consumer.result is not None
    assert json.loads(consumer.result.exit_value or "")["ref"] == "20/prod"
    run_json = json.loads((run.output_dir / "run.json").read_text())
    assert run_json["job_parameters"] == [{"name": "env", "value": "prod"}]
    assert (run.output_dir / "report.html").is_file()


@pytest.mark.kernel
def test_run_plan_repairs_an_earlier_run(project: Path) -> None:
    first = run_plan(PLANS / "chain.yaml", mode="parallel")
    assert first.result_state == "FAILED" and first.resume_from == ["b", "c"]
    again = run_plan(PLANS / "chain.yaml", repair=first.output_dir)
    # The tasks that succeeded are kept, not run again; what did not succeed runs again.
    kept = again.tasks["a"].last
    assert again.tasks["a"].reason == "kept from the repaired run" and again.tasks["d"].status == "SUCCESS"
    assert kept is not None and kept.output == str(first.output_dir / "a.ipynb")
    assert {k: t.status for k, t in again.tasks.items() if k in ("b", "c")} == {"b": "FAILED", "c": "UPSTREAM_FAILED"}
    b = again.tasks["b"].last
    assert b is not None and b.output == str(again.output_dir / "b.ipynb")


# -- the public names ------------------------------------------------------------------------------
def test_every_public_name_resolves_and_is_typed_for_checkers() -> None:
    for name in nbflow.__all__:
        assert getattr(nbflow, name) is not None, name
    tree = ast.parse(Path(nbflow.__file__).read_text())
    typed = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.If)
             for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
    assert typed == set(nbflow._LAZY), "the TYPE_CHECKING imports and _LAZY must name the same things"
    assert nbflow.run_plan.__module__ == "nbflow.plan_runner"


def test_importing_nbflow_costs_no_heavy_import() -> None:
    # Kernels import nbflow.runtime, and with it the package: no papermill, pydantic or nbformat.
    code = ("import sys, nbflow; print(json.dumps(sorted(m for m in ('papermill', 'pydantic', 'nbformat', "
            "'click') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []
