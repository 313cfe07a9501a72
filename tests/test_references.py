"""``{{...}}`` references in task parameters: checked when a plan loads, replaced when a task starts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nbflow.errors import InputError
from nbflow.plan import Plan, PlanError, load_plan
from nbflow.plan.references import JOB_FIELDS, START_TIME_FIELDS, reference_problems, resolve

CHILD = Path(__file__).parent / "notebooks" / "child.py"
START = dt.datetime(2026, 11, 20, 7, 8, 9, tzinfo=dt.timezone.utc)  # a Friday


def test_references() -> None:
    assert reference_problems("{{job.run_id}}-{{job.start_time.iso_date}}", set(), set(), set()) == []
    assert reference_problems("{{tasks.a.exit_value}}", set(), {"a", "b"}, {"b"}) == [
        "{{tasks.a.exit_value}}: task 'a' is not upstream of this task (add it to depends_on)"
    ]
    assert reference_problems("{{tasks.a.values}}", set(), {"a"}, {"a"})[0].endswith("or {{tasks.<key>.exit_value}}")
    assert reference_problems("{{other.thing}} {{workspace.id}}", set(), set(), set()) == []


def test_unknown_names_in_known_namespaces_are_problems() -> None:
    assert reference_problems("{{job.start_time.week}}", set(), set(), None) == [
        "{{job.start_time.week}}: unknown job reference"]
    assert reference_problems("{{ job.parameters.env }}", {"env"}, set(), None) == []  # spaces inside braces
    assert reference_problems("{{workspace.name}}", set(), set(), None) == [
        "{{workspace.name}}: unknown workspace reference"]
    assert reference_problems(42, set(), set(), None) == []  # only strings hold references


def test_a_reference_to_a_task_not_upstream_names_file_line_and_task(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\ntasks:\n  - task_key: a\n    notebook: {CHILD}\n"
                    f"  - task_key: b\n    notebook: {CHILD}\n    parameters:\n      x: '{{{{tasks.a.exit_value}}}}'\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.problems == [f"{path}:8: tasks[1].parameters.x: {{{{tasks.a.exit_value}}}}: "
                                   "task 'a' is not upstream of this task (add it to depends_on)"]


# -- evaluating: a run as resolve reads it (the scheduler's run model has the same fields) --------
@dataclass
class Result:
    exit_value: str | None = None
    task_values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempt:
    result: Result | None


@dataclass
class TaskRun:
    last: Attempt | None


@dataclass
class Run:
    plan: Plan
    run_id: str = "17"
    start_ms: int = int(START.timestamp() * 1000)
    job_parameters: dict[str, str] = field(default_factory=lambda: {"env": "dev"})
    tasks: dict[str, TaskRun] = field(default_factory=dict)


def run(**tasks: TaskRun) -> Run:
    plan = Plan.model_validate({"name": "nightly", "tasks": [{"task_key": "a", "notebook": "x"}]})
    return Run(plan, tasks=dict(tasks))


def test_job_references_are_replaced() -> None:
    text = "{{job.name}}/{{job.run_id}}/{{job.parameters.env}}/{{ job.start_time.iso_date }}/{{job.repair_count}}"
    assert resolve(text, run()) == "nightly/17/dev/2026-11-20/0"
    assert resolve("{{job.start_time.iso_datetime}} {{job.start_time.is_weekday}}", run()) == (
        "2026-11-20T07:08:09+00:00 true")
    assert resolve(3, run()) == 3  # values that are not strings pass as they are
    assert resolve("{{other.thing}} {{unclosed", run()) == "{{other.thing}} {{unclosed"


def test_task_references_are_replaced_by_upstream_results() -> None:
    done = TaskRun(Attempt(Result("bye", {"n": 3, "s": "x", "d": {"k": [1]}})))
    current = run(a=done)
    assert resolve("{{tasks.a.exit_value}}:{{tasks.a.values.n}}:{{tasks.a.values.s}}", current) == "bye:3:x"
    assert resolve("{{tasks.a.values.d}}", current) == '{"k": [1]}'  # JSON for what is not a string
    assert resolve("[{{tasks.a.exit_value}}]", run(a=TaskRun(Attempt(Result())))) == "[]"


def test_a_missing_result_or_task_value_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"\{\{tasks.a.values.m\}\}: task 'a' set no task value 'm'"):
        resolve("{{tasks.a.values.m}}", run(a=TaskRun(Attempt(Result("", {"n": 1})))))
    with pytest.raises(InputError, match=r"task 'a' has no result in this run"):
        resolve("{{tasks.a.exit_value}}", run(a=TaskRun(None)))


def test_every_reference_the_checker_accepts_is_one_a_run_replaces() -> None:
    accepted = ([f"{{{{job.{name}}}}}" for name in JOB_FIELDS]
                + [f"{{{{job.start_time.{name}}}}}" for name in START_TIME_FIELDS]
                + ["{{job.parameters.env}}", "{{tasks.a.exit_value}}", "{{tasks.a.values.n}}"])
    current = run(a=TaskRun(Attempt(Result("bye", {"n": 1}))))
    for text in accepted:
        assert reference_problems(text, {"env"}, {"a"}, {"a"}) == [], text
        value = resolve(text, current)
        assert isinstance(value, str) and "{{" not in value, text
    assert resolve("{{job.start_time.timestamp_ms}}", current) == str(current.start_ms)
