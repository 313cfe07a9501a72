"""dbutils.jobs.taskValues, dbutils.fs, dbutils.secrets and the cell magics inside real kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow import read_result

from .conftest import exit_json, run

pytestmark = pytest.mark.kernel


def test_task_values_outside_a_job() -> None:
    result = run("taskvalues.py")
    outcome = exit_json(result)
    assert outcome["debug"] == 7
    assert outcome["no_debug"] == (
        "Must pass debugValue when calling get outside of a job context. debugValue cannot be None."
    )
    assert "48 KiB" in outcome["too_big"]
    assert "not JSON-serialisable" in outcome["not_json"]
    assert result.task_values == {"rows": 42, "meta": {"source": "sales", "ok": True}}


def test_task_values_inside_a_job_context() -> None:
    from nbflow import run_notebook

    from .conftest import NOTEBOOKS

    result = run_notebook(NOTEBOOKS / "taskvalues.py", context={"job_task_values": {"upstream": {"rows": 3}}})
    assert exit_json(result)["debug"] == 3


def test_fs_operations_on_the_local_dbfs_root(project: Path) -> None:
    outcome = exit_json(run("fs_ops.py"))
    assert outcome["head"] == "héllo"
    assert "File already exists" in outcome["exists"]
    assert outcome["ls"] == [["in/", 0, True], ["in2/", 0, True], ["moved.txt", 6, False]]
    assert outcome["paths"][0] == "dbfs:/tmp/nbflow-test/in/"
    assert "non-empty directory" in outcome["rm_dir"]
    assert outcome["rm"] is True and outcome["rm_missing"] is False
    assert outcome["missing"] == "java.io.FileNotFoundException: File dbfs:/tmp/nbflow-test does not exist."
    assert (project / ".nbflow" / "dbfs").is_dir()


def test_dbfs_root_can_be_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_DBFS_ROOT", str(tmp_path / "elsewhere"))
    result = run("magics.py")
    assert result.exit_value == "magic-test/"
    assert (tmp_path / "elsewhere").is_dir()


def test_secrets_are_read_and_redacted_everywhere(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".nbflow").mkdir()
    (project / ".nbflow" / "secrets.yaml").write_text("app:\n  token: s3cr3t-value\n  other: x\n")
    monkeypatch.setenv("NBFLOW_SECRET__ENV_SCOPE__API_KEY", "from-env")
    result = run("secrets_use.py")
    outcome = exit_json(result)
    assert outcome["length"] == len("s3cr3t-value") and outcome["bytes"] is True
    assert outcome["keys"] == ["other", "token"]
    assert outcome["scopes"] == ["app", "env_scope"]
    assert outcome["env"] is True
    assert "Secret does not exist with scope: app and key: missing" in outcome["missing"]
    saved = Path(result.output).read_text()
    assert "s3cr3t-value" not in saved
    assert "the token is [REDACTED]" in saved
    assert result.variables["token"]["repr"] == "'[REDACTED]'"


def test_secret_in_an_error_message_is_redacted(project: Path) -> None:
    (project / ".nbflow").mkdir()
    (project / ".nbflow" / "secrets.json").write_text('{"app": {"token": "tok-123456"}}')
    result = run("secret_in_error.py")
    assert result.status == "FAILED"
    assert result.error.evalue == "bad credentials: [REDACTED]"
    assert "tok-123456" not in Path(result.output).read_text()


def test_cell_magics_md_sh_python_fs() -> None:
    result = run("magics.py")
    assert result.status == "SUCCESS"
    assert result.exit_value == "magic-test/"
    assert result.variables["via_python_magic"]["value"] == 1
    saved = Path(result.output).read_text()
    assert "from sh" in saved
    assert "pip " in saved and " from " in saved  # %pip --version ran in the kernel's interpreter


def test_scala_cells_fail_with_a_clear_message() -> None:
    result = run("scala_cell.py")
    assert result.status == "FAILED"
    assert "cannot run in nbflow's local Python kernel" in result.error.evalue


def test_captured_variables_after_a_failure() -> None:
    result = run("variables.py")
    assert result.status == "FAILED"
    v = result.variables
    assert set(v) == {"count", "ratio", "name", "flags", "config", "nothing", "ordered", "thing", "display"}
    assert v["count"] == {"type": "int", "repr": "3", "value": 3}
    assert v["config"]["value"] == {"a": 1, "b": [1, 2]}
    assert v["nothing"]["value"] is None
    assert v["ordered"]["type"] == "collections.OrderedDict" and v["ordered"]["value"] == {"a": 1}
    assert v["thing"] == {"type": "__main__.Thing", "repr": "Thing()"}
    assert result.variable("ratio") == 0.5
    with pytest.raises(KeyError, match="has no JSON value"):
        result.variable("thing")


def test_env_secrets_reach_the_runtime_but_not_the_notebooks_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_SECRET__ENV_SCOPE__API_KEY", "env-secret-value")
    result = run("secret_env.py")
    outcome = exit_json(result)
    assert outcome["environ"] == [] and outcome["in_shell"] is False and outcome["in_proc"] is False
    assert outcome["read"] is True
    assert outcome["child"] == "child read 16 chars, environ shows secrets: False"
    saved = Path(result.output).read_text()
    assert "env-secret-value" not in saved
    sh_output = json.loads(saved)["cells"][1]["outputs"]
    printed = "".join("".join(o.get("text", [])) for o in sh_output)
    assert printed.strip() == "0"  # %sh env shows none of them
    # Passing a secret on as a task value says so, where the writer sees it.
    assert "task value 'leaked' contains a secret value; it is passed on as [REDACTED]" in saved
    assert result.task_values == {"leaked": {"key": "[REDACTED]"}}


@pytest.fixture
def secrets(project: Path) -> str:
    value = 'tok"en\\with\nnewline'
    (project / ".nbflow").mkdir()
    (project / ".nbflow" / "secrets.json").write_text(json.dumps({"app": {"token": value}}))
    return value


def test_secret_passed_to_a_child_is_redacted_in_every_record(secrets: str) -> None:
    result = run("secret_to_child.py")
    assert result.exit_value == f"length {len(secrets)}"
    [child] = result.children
    assert child["parameters"]["token"] == "[REDACTED]"
    child_result = read_result(child["output"])
    assert child_result.parameters["token"]["value"] == "[REDACTED]"
    assert child_result.variables["received"]["repr"] == "'[REDACTED]'"
    for saved in (Path(result.output), Path(child["output"])):
        text = saved.read_text()
        assert "newline" not in text, saved  # neither raw nor escaped spellings of the secret
    assert "token" in result.variables and "newline" not in result.variables["token"]["repr"]
