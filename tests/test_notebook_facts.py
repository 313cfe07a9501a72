"""What commands remember of notebooks between them (nbflow.notebook_facts): right answers, read
again when a file changes, a damaged memory ignored, and a plan of unchanged notebooks started
without importing nbformat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbflow import notebook_facts, notebooks


@pytest.fixture
def fresh_memory(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(notebook_facts, "_memory", {})
    return project


def _source(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("# Databricks notebook source\n" + body + "\n", encoding="utf-8")
    return path


def test_facts_say_what_a_notebook_uses_and_why_one_cannot_be_read(fresh_memory: Path) -> None:
    spark = _source(fresh_memory, "a.py", "spark.range(3).count()")
    orchestrator = _source(fresh_memory, "b.py", 'dbutils.notebook.run("./a", 60)')
    plain = _source(fresh_memory, "c.py", "x = 1")
    broken = fresh_memory / "d.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    assert notebook_facts.facts(spark) == notebook_facts.Facts("", True, False)
    assert notebook_facts.facts(orchestrator) == notebook_facts.Facts("", False, True)
    assert notebook_facts.facts(plain) == notebook_facts.Facts("", False, False)
    problem = notebook_facts.facts(broken).problem
    assert "not a valid .ipynb" in problem and str(broken) in problem
    assert notebook_facts.wants_cluster(orchestrator) and not notebook_facts.uses_spark(orchestrator)
    assert "not found" in notebook_facts.facts(fresh_memory / "gone.py").problem


def test_an_unchanged_notebook_is_not_read_again_even_by_another_command(
        fresh_memory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _source(fresh_memory, "a.py", "spark.range(3).count()")
    assert notebook_facts.uses_spark(path)
    stored = json.loads((fresh_memory / ".nbflow" / "cache" / "notebooks.json").read_text())
    assert stored[str(path.resolve())]["facts"]["spark"] is True

    def no_reading(_path: object) -> None:
        raise AssertionError("read again")

    monkeypatch.setattr(notebooks, "read_notebook", no_reading)
    monkeypatch.setattr(notebook_facts, "_memory", {})  # as another command: only the file remembers
    assert notebook_facts.uses_spark(path)


def test_a_changed_notebook_or_a_changed_reader_is_read_again(fresh_memory: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _source(fresh_memory, "a.py", "spark.range(3).count()")
    assert notebook_facts.uses_spark(path)
    before = path.stat().st_mtime_ns
    _source(fresh_memory, "a.py", "x = 2")
    os.utime(path, ns=(before, before))  # same time: the size tells it apart
    assert not notebook_facts.uses_spark(path)
    _source(fresh_memory, "a.py", "x=spark")
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert notebook_facts.uses_spark(path)

    reads: list[object] = []
    real = notebooks.read_notebook

    def counted(p: object) -> object:
        reads.append(p)
        return real(p)  # type: ignore[arg-type]

    monkeypatch.setattr(notebooks, "read_notebook", counted)
    assert notebook_facts.uses_spark(path) and not reads
    newer_reader = fresh_memory / "notebooks.py"  # as if nbflow were upgraded: its reader changed
    newer_reader.write_text("")
    monkeypatch.setattr(notebooks, "__file__", str(newer_reader))
    assert notebook_facts.uses_spark(path) and len(reads) == 1


def test_a_damaged_memory_is_ignored_and_replaced(fresh_memory: Path) -> None:
    cache = fresh_memory / ".nbflow" / "cache" / "notebooks.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"half": ', encoding="utf-8")
    path = _source(fresh_memory, "a.py", "spark.sql('select 1')")
    assert notebook_facts.uses_spark(path)
    assert json.loads(cache.read_text())[str(path.resolve())]["facts"]["spark"] is True
    assert [p.name for p in cache.parent.iterdir()] == ["notebooks.json"]  # no temporary left


def test_a_plan_of_unchanged_notebooks_is_checked_without_nbformat(project: Path) -> None:
    _source(project, "a.py", "x = 1")
    ipynb = project / "b.ipynb"
    ipynb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "y = 2", "metadata": {},
                                            "outputs": [], "execution_count": None, "id": "c1"}],
                                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    (project / "plan.yaml").write_text(
        "name: p\ntasks:\n  - task_key: a\n    notebook: a.py\n  - task_key: b\n    notebook: b.ipynb\n")
    script = ("import sys; from nbflow.plan import load_plan; load_plan('plan.yaml'); "
              "print('nbformat' in sys.modules)")
    env = {**os.environ, "NBFLOW_PROJECT_DIR": str(project)}
    first = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert first.stdout.strip() == "True", first.stderr  # read once, fully
    assert second.stdout.strip() == "False", second.stderr
    ipynb.write_text("{broken", encoding="utf-8")  # a changed file is read, and refused
    third = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert third.returncode != 0 and "not a valid .ipynb" in third.stderr
