"""Plan files: the model, validation messages (file, line, field path), the Jobs API shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow.plan import PlanError, load_plan

from .conftest import cli

PLANS = Path(__file__).parent / "plans"
SAMPLES = Path(__file__).parent.parent / "sample_notebooks"
JOBS_API = Path(__file__).parent / "jobs_api_plan.json"  # next to notebooks/, as a repo's root


def test_the_sample_plan_is_valid() -> None:
    plan, notebooks = load_plan(SAMPLES / "plan.yaml")
    assert plan.name == "sales-pipeline" and len(plan.tasks) == 6
    assert plan.order()[0] == "setup"
    assert plan.order() == [t.task_key for t in plan.tasks]  # stable: the file's order after deps
    assert notebooks["customer_ltv"] == (SAMPLES / "worker_2_customer_ltv.ipynb").resolve()
    assert plan.parameters[0].name == "rows" and plan.parameters[0].default == "1000000"
    assert plan.task("big_orders").max_retries == 1
    assert plan.schedule is not None and plan.schedule.pause_status == "PAUSED"


def test_every_problem_is_reported_with_file_line_and_path() -> None:
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "bad.yaml")
    problems = info.value.problems
    where = f"{PLANS / 'bad.yaml'}"
    assert f"{where}:2: colour: unknown field" in problems
    assert any(p.startswith(f"{where}:4: schedule.quartz_cron_expression: a Quartz cron expression has 6 or 7")
               for p in problems)
    assert any(p.startswith(f"{where}:5: schedule.timezone_id: unknown time zone 'Mars/Olympus'") for p in problems)
    assert any(p.startswith(f"{where}:9: tasks[0].run_if: 'SOMETIMES' is not a run_if value (ALL_SUCCESS")
               for p in problems)


def test_graph_notebook_and_reference_problems() -> None:
    text = (PLANS / "bad.yaml").read_text().replace("colour: blue\n", "").replace('"0 0 6 * *"', '"0 0 6 * * ?"')
    text = text.replace("Mars/Olympus", "UTC").replace("SOMETIMES", "ALL_DONE")
    fixed = PLANS.parent / "plans" / "_bad_graph.yaml"
    fixed.write_text(text)
    try:
        with pytest.raises(PlanError) as info:
            load_plan(fixed)
    finally:
        fixed.unlink()
    problems = [p.split(": ", 1)[1] for p in info.value.problems]
    assert "tasks[1].task_key: duplicate task_key 'a' (also tasks[0])" in problems
    assert "tasks[1].depends_on[0]: unknown task 'ghost'" in problems
    assert any(p.startswith("tasks[1].notebook: notebook not found: ../notebooks/nope.py") for p in problems)
    assert "tasks[1].parameters.x: {{tasks.ghost.values.n}}: no task named 'ghost'" in problems
    assert "tasks[1].parameters.y: {{job.parameters.missing}}: no job parameter named 'missing'" in problems
    assert "tasks[1].parameters.z: {{job.naem}}: unknown job reference" in problems
    assert not any("literal" in p for p in problems)  # a missing brace makes it a literal


def test_cycles_are_named() -> None:
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "cycle.yaml")
    [problem] = info.value.problems
    assert "dependency cycle: " in problem and problem.count("->") == 3


def test_a_jobs_api_definition_loads_with_workspace_paths_mapped() -> None:
    plan, notebooks = load_plan(JOBS_API)
    assert plan.name == "from-the-jobs-api" and [p.name for p in plan.parameters] == ["env"]
    first, second = plan.tasks
    assert first.notebook == "notebooks/child" and first.parameters == {"x": "3"}
    assert notebooks["first"].name == "child.py" and notebooks["second"].name == "child_echo.py"
    assert second.depends_on == ["first"] and second.run_if == "ALL_DONE" and second.max_retries == 2


def test_jobs_api_errors_name_the_original_fields(tmp_path: Path) -> None:
    data = json.loads(JOBS_API.read_text())
    data["settings"]["tasks"][0]["notebook_task"]["notebook_path"] = "/Workspace/nowhere/ghost"
    bad = JOBS_API.with_name("_jobs_bad.json")
    bad.write_text(json.dumps(data, indent=1))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if '"notebook_path"' in text)
    try:
        with pytest.raises(PlanError) as info:
            load_plan(bad)
    finally:
        bad.unlink()
    assert f":{line}: tasks[0].notebook_task.notebook_path: notebook not found: /Workspace/nowhere/ghost" in str(
        info.value)


def test_validate_and_schema_commands() -> None:
    ok = cli("validate", str(SAMPLES / "plan.yaml"))
    assert ok.returncode == 0 and "OK: plan 'sales-pipeline', 6 tasks, order setup -> region_daily" in ok.stdout
    bad = cli("validate", str(PLANS / "bad.yaml"))
    assert bad.returncode == 2
    assert all(line.startswith(f"nbflow: {PLANS / 'bad.yaml'}:") for line in bad.stderr.splitlines())
    assert len(bad.stderr.splitlines()) >= 4
    missing = cli("validate", str(PLANS / "none.yaml"))
    assert missing.returncode == 2 and "plan not found" in missing.stderr
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "Plan" and "tasks" in schema["required"]
    assert set(schema["$defs"]["Task"]["properties"]["run_if"]["enum"]) == {
        "ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED"}


def test_short_form_parameters_are_reported_by_name_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nparameters:\n  ok: 1\n  bad name: 2\n  listy: [1, 2]\n"
                    f"tasks:\n  - task_key: a\n    notebook: {PLANS.parent / 'notebooks' / 'child.py'}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:4: parameters.bad name: String should match pattern")
    assert problems[1] == f"{path}:5: parameters.listy: must be a string, a number, a boolean or null"
