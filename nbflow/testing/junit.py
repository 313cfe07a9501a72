"""JUnit XML for a run outside pytest (``nbflow run ... --junit-xml FILE``), in the shape CI
systems read: one test suite, one test case per notebook or plan task, named by its task key
and its notebook, with its properties (status, exit value, duration, failing cell, executed
notebook); a failed task is a failure with its error, a task not run a skip with the reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..runs import NOT_RUN, SUCCEEDED, NotebookResult, PlanRun, TaskRun
from .sanitize import ANSI
from .snapshot import cell_label, executed_cell

_NOT_RUN = frozenset(str(state) for state in NOT_RUN)


def notebook_junit(result: NotebookResult, path: Path) -> None:
    """JUnit XML for one notebook run."""
    suite = _suite(Path(result.notebook).name, result.duration_s or 0.0)
    _case(suite, Path(result.notebook).stem, Path(result.notebook).name, str(result.status), result, "")
    _write(suite, path)


def plan_junit(run: PlanRun, path: Path) -> None:
    """JUnit XML for a plan run: a test case a task."""
    suite = _suite(run.plan.name, (run.end_ms - run.start_ms) / 1000)
    for key, task in run.tasks.items():
        _case(suite, run.plan.name, key, str(task.status), _result(task), task.reason)
    _write(suite, path)


def _result(task: TaskRun) -> NotebookResult | None:
    return task.last.result if task.last else None


def _suite(name: str, seconds: float) -> ET.Element:
    return ET.Element("testsuite", {"name": name, "time": f"{seconds:.3f}"})


def _case(suite: ET.Element, classname: str, name: str, status: str, result: NotebookResult | None,
          reason: str) -> None:
    seconds = result.duration_s if result and result.duration_s is not None else 0.0
    case = ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": f"{seconds:.3f}"})
    properties = ET.SubElement(case, "properties")
    values = {"status": status, "exit_value": result.exit_value if result else None,
              "duration_s": None if result is None or result.duration_s is None else f"{result.duration_s:.3f}",
              "executed_notebook": result.output if result else None}
    if result is not None and result.error is not None and result.error.cell_index is not None:
        index = result.error.cell_index
        values["failing_cell"] = cell_label(index, executed_cell(result, index) or {})
    for key, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", {"name": key, "value": str(value)})
    if status in _NOT_RUN:
        why = reason or next((text for state, text in NOT_RUN.items() if str(state) == status), status)
        ET.SubElement(case, "skipped", {"message": f"not run: {why}"})
    elif status not in {str(s) for s in SUCCEEDED}:
        error = result.error if result else None
        message = f"{status}: {error.ename}: {error.evalue}" if error else f"{status}{': ' + reason if reason else ''}"
        failure = ET.SubElement(case, "failure", {"message": message})
        if error is not None and error.traceback:
            failure.text = ANSI.sub("", "\n".join(error.traceback))


def _write(suite: ET.Element, path: Path) -> None:
    tests = suite.findall("testcase")
    suite.set("tests", str(len(tests)))
    suite.set("failures", str(sum(1 for t in tests if t.find("failure") is not None)))
    suite.set("skipped", str(sum(1 for t in tests if t.find("skipped") is not None)))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
