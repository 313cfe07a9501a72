"""The sample plan under ``pytest --nbflow``, checked against the goldens committed with it
(``sample_notebooks/__nbflow_golden__``), as a user's CI would check theirs: with ``CI=true``, in a
fresh project, at 20,000 rows. ``--nbflow-golden=update`` there rewrites them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli

pytestmark = [pytest.mark.kernel, pytest.mark.spark]

SAMPLES = Path(__file__).resolve().parent.parent / "sample_notebooks"


def test_the_sample_plan_matches_its_committed_goldens(tmp_path: Path) -> None:
    project = tmp_path / "samples"
    shutil.copytree(SAMPLES, project)
    env = {**os.environ, "NBFLOW_PROJECT_DIR": str(project), "CI": "true"}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "--nbflow", "plan.yaml", "--nbflow-param",
                               "rows=20000", "--nbflow-golden=check", "-p", "no:cacheprovider", "-q",
                               "--junitxml", str(tmp_path / "junit.xml")],
                              cwd=project, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "7 passed" in done.stdout  # six tasks and the plan's task states
        assert (tmp_path / "junit.xml").read_text().count("<testcase ") == 7
    finally:
        cli("cluster", "stop", env={"NBFLOW_PROJECT_DIR": str(project)})
