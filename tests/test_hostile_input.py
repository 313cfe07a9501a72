"""Hostile and oversized input: every bad file or argument exits 2 with one line naming it, quickly.

Each case here used to end as an internal error (exit 1), run out of memory or recurse to death.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbflow.plan import PlanError, load_plan

from .conftest import NOTEBOOKS, cli

# A bad input must be refused at once; these bounds only guard against a hang or a memory blow-up.
QUICK_S = 30


def _billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join([*lines, "name: bomb", "tasks: [{task_key: t, notebook: nb}]"]) + "\n"


def _refused(args: list[str], path: Path | None = None) -> str:
    """Run nbflow; it must exit 2 with exactly one line on stderr (naming ``path`` if given)."""
    done = cli(*args, timeout=QUICK_S)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1, done.stderr[-2000:]
    assert "internal error" not in lines[0]
    if path is not None:
        assert str(path) in lines[0], lines[0]
    return lines[0]


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "bomb.yaml"
    plan.write_text(_billion_laughs())
    line = _refused(["validate", str(plan)], plan)
    assert "alias" in line and "1,000,000" in line


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "loop.yaml"
    plan.write_text("name: loop\nx: &x [1, *x]\ntasks: [{task_key: t, notebook: nb}]\n")
    line = _refused(["validate", str(plan)], plan)
    assert f"{plan}:2:" in line and "refers to itself" in line


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_deeply_nested_plans_are_refused(tmp_path: Path, suffix: str) -> None:
    plan = tmp_path / f"deep.{suffix}"
    depth = 100_000
    if suffix == "yaml":
        plan.write_text("name: deep\ntasks: " + "[" * depth + "]" * depth + "\n")
    else:
        plan.write_text('{"name": "deep", "tasks": ' + "[" * depth + "]" * depth + "}\n")
    line = _refused(["validate", str(plan)], plan)
    assert "nest" in line


def test_moderate_nesting_past_the_bound_is_refused_with_its_line(tmp_path: Path) -> None:
    # Deep enough to trouble the JSON encoder and pydantic later, shallow enough for the YAML parser.
    plan = tmp_path / "nested.yaml"
    plan.write_text("name: n\ntasks:\n  - task_key: t\n    notebook: nb\n    parameters:\n      x: "
                    + "[" * 500 + "]" * 500 + "\n")
    line = _refused(["validate", str(plan)], plan)
    assert f"{plan}:6:" in line and "nested more than" in line


def test_a_binary_plan_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(Path(sys.executable).resolve().read_bytes()[:65536])
    line = _refused(["validate", str(plan)], plan)
    assert "not UTF-8" in line or "binary" in line
    plan.write_bytes(b"name: x\x00\x01\x02\ntasks: []\n")  # valid UTF-8, but a NUL: binary all the same
    assert "binary" in _refused(["validate", str(plan)], plan)


def test_a_plan_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    plan = tmp_path / "huge.yaml"
    with plan.open("w") as f:
        f.write("name: huge\ntasks:\n")
        f.write("  # padding\n" * (17 * 2**20 // 12))
    line = _refused(["validate", str(plan)], plan)
    assert "16 MiB" in line


def test_a_plan_read_from_an_endless_device_is_capped() -> None:
    # /dev/zero never ends: the cap must stop the read, not memory running out.
    line = _refused(["validate", "/dev/zero"])
    assert "/dev/zero" in line


def test_the_loader_raises_plan_error_for_python_callers(tmp_path: Path) -> None:
    plan = tmp_path / "bomb.yaml"
    plan.write_text(_billion_laughs())
    with pytest.raises(PlanError, match="alias"):
        load_plan(plan)


def test_a_parameters_file_bomb_is_refused(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(_billion_laughs())
    line = _refused(["run", str(NOTEBOOKS / "widgets.py"), "-f", str(params)], params)
    assert "alias" in line
    params.write_bytes(b"x: \xff\xfe\n")
    assert "not UTF-8" in _refused(["run", str(NOTEBOOKS / "widgets.py"), "-f", str(params)], params)


def test_a_junk_py_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.py"
    junk.write_bytes(os.urandom(4096))
    _refused(["run", str(junk)], junk)
    # The header, then bytes that are not UTF-8: still not a notebook that can be read.
    junk.write_bytes(b"# Databricks notebook source\nprint(1)\n\xff\xfe\x00\n")
    assert "not UTF-8" in _refused(["run", str(junk)], junk)


def test_junk_ipynb_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ipynb"
    junk.write_bytes(os.urandom(4096))
    _refused(["run", str(junk)], junk)
    junk.write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _refused(["run", str(junk)], junk)


def test_invalid_utf8_in_a_parameter_is_refused() -> None:
    for item in (b"x=\xff", b"\xff=1"):
        done = subprocess.run([sys.executable, "-m", "nbflow", "run", str(NOTEBOOKS / "widgets.py"), b"-p", item],
                              capture_output=True, timeout=QUICK_S)
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        assert done.returncode == 2, done.stderr[-2000:]
        assert len(lines) == 1 and "-p" in lines[0] and "not valid UTF-8" in lines[0], lines


def _plan_with(tmp_path: Path, notebooks: list[str]) -> Path:
    folder = tmp_path / "a" / "b" / "c"
    folder.mkdir(parents=True)
    plan = folder / "plan.yaml"
    tasks = "".join(f"  - task_key: t{i}\n    notebook: {nb}\n" for i, nb in enumerate(notebooks))
    plan.write_text(f"name: p\ntasks:\n{tasks}")
    return plan


def test_validate_refuses_files_that_are_not_notebooks(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    plan = _plan_with(tmp_path, ["/etc/hostname", "../../../../../../../../../../etc/passwd", str(text),
                                 str(NOTEBOOKS / "not_a_notebook.py")])
    done = cli("validate", str(plan), timeout=QUICK_S)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    for i, line in enumerate(lines):
        assert line.startswith(f"nbflow: {plan}:{4 + 2 * i}: tasks[{i}].notebook: "), line
        assert "not a notebook" in line or "must start with the line" in line, line


def test_validate_refuses_a_broken_notebook_it_would_fail_to_read(tmp_path: Path) -> None:
    plan = _plan_with(tmp_path, [str(NOTEBOOKS / "broken.ipynb"), str(NOTEBOOKS / "malformed.py")])
    done = cli("validate", str(plan), timeout=QUICK_S)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "not a valid .ipynb" in lines[0] and "MAGIC" in lines[1], lines


def test_notebooks_outside_the_plan_folder_still_load_when_they_are_notebooks(tmp_path: Path) -> None:
    # ../notebooks/x.py next to a plans/ folder is a usual layout: a real notebook is accepted.
    target = tmp_path / "notebooks"
    target.mkdir()
    (target / "job.py").write_text("# Databricks notebook source\nprint(1)\n")
    plan = _plan_with(tmp_path, [os.path.relpath(target / "job", tmp_path / "a" / "b" / "c")])
    _loaded, notebooks = load_plan(plan)
    assert notebooks["t0"] == (target / "job.py").resolve()


# -- scale -------------------------------------------------------------------------------------
def _chain(folder: Path, size: int, source: str = "prev") -> Path:
    (folder / "nb.py").write_text("# Databricks notebook source\nprint(1)\n")
    lines = ["name: chain", "tasks:", "  - {task_key: t0, notebook: nb.py}"]
    for i in range(1, size):
        ref = "t0" if source == "root" else f"t{i - 1}"
        params = "" if source == "none" else f', parameters: {{n: "{{{{tasks.{ref}.values.n}}}}"}}'
        lines.append(f"  - {{task_key: t{i}, notebook: nb.py, depends_on: [t{i - 1}]{params}}}")
    plan = folder / "chain.yaml"
    plan.write_text("\n".join(lines) + "\n")
    return plan


@pytest.mark.parametrize("source", ["prev", "root"])
def test_a_3000_task_chain_with_references_validates(tmp_path: Path, source: str) -> None:
    # Cubic before (over 120 s); a generous bound here only guards against a hang.
    done = cli("validate", str(_chain(tmp_path, 3000, source)), timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3000 tasks, order t0 -> t1 -> t2" in done.stdout


def test_references_to_tasks_not_upstream_are_still_found_in_a_long_chain(tmp_path: Path) -> None:
    plan = _chain(tmp_path, 500)
    # t10 reads t400, which runs after it: not upstream. t499 reads t0: upstream, fine.
    text = plan.read_text().replace('{n: "{{tasks.t9.values.n}}"}', '{n: "{{tasks.t400.values.n}}"}')
    text = text.replace('{n: "{{tasks.t498.values.n}}"}', '{n: "{{tasks.t0.exit_value}}"}')
    plan.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(plan)
    assert info.value.problems == [
        f"{plan}:13: tasks[10].parameters.n: {{{{tasks.t400.values.n}}}}: task 't400' is not upstream of this "
        "task (add it to depends_on)"]


def test_upstream_and_downstream_of_a_long_chain(tmp_path: Path) -> None:
    plan, _notebooks = load_plan(_chain(tmp_path, 3000))
    assert plan.upstream("t2999") == {f"t{i}" for i in range(2999)}
    assert plan.downstream("t2990") == {f"t{i}" for i in range(2991, 3000)}
    assert plan.order()[:3] == ["t0", "t1", "t2"] and len(plan.order()) == 3000


def test_a_cycle_in_a_long_chain_is_named(tmp_path: Path) -> None:
    plan = _chain(tmp_path, 2000)
    plan.write_text(plan.read_text().replace("{task_key: t0, notebook: nb.py}",
                                             "{task_key: t0, notebook: nb.py, depends_on: [t3]}"))
    with pytest.raises(PlanError) as info:
        load_plan(plan)
    cycles = ("dependency cycle: t0 -> t3 -> t2 -> t1 -> t0", "dependency cycle: t3 -> t2 -> t1 -> t0 -> t3")
    assert any(c in p for c in cycles for p in info.value.problems), info.value.problems


@pytest.mark.kernel
def test_running_the_end_of_a_3000_task_chain(tmp_path: Path) -> None:
    # --from walked every task's upstream set (cubic); the scheduler scanned every task per event.
    done = cli("run", str(_chain(tmp_path, 3000, "none")), "--from", "t2998", "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert {t["task_key"]: t["status"] for t in summary["tasks"]} == {
        "t2998": "SUCCESS", "t2999": "SUCCESS"}


def test_output_problems_are_input_errors(tmp_path: Path) -> None:
    proc = cli("run", str(NOTEBOOKS / "trivial.ipynb"), "--output-dir", "/proc/nbflow-cannot")
    assert proc.returncode == 2 and "cannot create the output folder" in proc.stderr
    proc = cli("run", str(NOTEBOOKS / "trivial.ipynb"), "--output-dir", str(NOTEBOOKS))
    assert proc.returncode == 2 and "would overwrite its source" in proc.stderr
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1", "metadata": {}}],
                               "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    proc = cli("run", str(bad))
    assert proc.returncode == 2 and "not a valid .ipynb" in proc.stderr and len(proc.stderr.splitlines()) == 1
