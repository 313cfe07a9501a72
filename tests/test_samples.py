"""The sample notebooks that the README's demo runs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nbflow import run_notebook

pytestmark = pytest.mark.kernel

SAMPLES = Path(__file__).parent.parent / "sample_notebooks"


def test_hello_sample() -> None:
    result = run_notebook(SAMPLES / "hello.py", {"name": "CI", "shout": "yes"})
    assert result.ok
    assert json.loads(result.exit_value) == {"greeting": "HELLO, CI!", "length": 10}
    assert result.task_values == {"greeting": "HELLO, CI!"}
    assert result.cells[-1]["status"] == "skipped"
    saved = nbformat.read(result.output, as_version=4)
    assert saved.metadata["papermill"]["input_path"] == str((SAMPLES / "hello.py").resolve())


def test_workflow_sample() -> None:
    result = run_notebook(SAMPLES / "workflow.py", {"names": "ada,grace"})
    assert result.ok, result.error
    assert json.loads(result.exit_value)["greetings"] == ["Hello, ada!", "Hello, grace!"]
    assert len(result.children) == 4 and {c["status"] for c in result.children} == {"SUCCESS"}
