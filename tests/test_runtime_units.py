"""The runtime's pieces in-process: widgets, task values, fs, secrets, redaction, magics parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow.errors import DbfsError, InputWidgetNotDefined, SecretNotFound, TaskValueError
from nbflow.runtime.fs import FsUtils
from nbflow.runtime.jobs import TaskValues
from nbflow.runtime.magics import databricks_cells, parse_run_line
from nbflow.runtime.notebook import EXIT_LIMIT_BYTES, truncate_exit
from nbflow.runtime.secrets import Redactor, SecretsUtils
from nbflow.runtime.widgets import WidgetsUtils


def test_argument_wins_over_default_and_is_visible_without_a_widget() -> None:
    w = WidgetsUtils({"a": "from-job", "loose": "x"})
    w.text("a", "default")
    w.text("b", "default-b")
    assert w.get("a") == "from-job"
    assert w.get("b") == "default-b"
    assert w.get("loose") == "x"
    assert w.getAll() == {"a": "from-job", "b": "default-b", "loose": "x"}


def test_undefined_widget_message() -> None:
    w = WidgetsUtils({})
    with pytest.raises(InputWidgetNotDefined) as info:
        w.get("nope")
    assert "InputWidgetNotDefined: No input widget named nope is defined" in str(info.value)
    with pytest.raises(InputWidgetNotDefined):
        w.remove("nope")


def test_widget_values_and_defaults_must_be_strings() -> None:
    w = WidgetsUtils({})
    with pytest.raises(TypeError, match="must be a string"):
        w.text("n", 5)  # type: ignore[arg-type]


def test_dropdown_and_multiselect_defaults_must_be_choices() -> None:
    w = WidgetsUtils({})
    with pytest.raises(ValueError, match="must be one of the choices"):
        w.dropdown("d", "x", ["a", "b"])
    with pytest.raises(ValueError, match="must be one of the choices"):
        w.multiselect("m", "a,x", ["a", "b"])
    w.multiselect("m", "a,b", ["a", "b", "c"])
    assert w.get("m") == "a,b"
    w.combobox("c", "free text", ["a"])
    assert w.get("c") == "free text"


def test_bound_arguments_for_run_includes_are_scoped() -> None:
    w = WidgetsUtils({"a": "outer"})
    with w.bound({"a": "inner"}):
        assert w.get("a") == "inner"
    assert w.get("a") == "outer"


def test_unused_arguments() -> None:
    w = WidgetsUtils({"used": "1", "declared": "2", "unused": "3"})
    w.get("used")
    w.text("declared", "x")
    assert w.unused_arguments() == ["unused"]


def test_task_values_in_a_job() -> None:
    tv = TaskValues({"up": {"rows": 3}})
    assert tv.get("up", "rows") == 3
    assert tv.get("up", "missing", default=5) == 5
    with pytest.raises(TaskValueError, match="set no task value named 'missing'"):
        tv.get("up", "missing")
    with pytest.raises(TaskValueError, match="No task named 'other'"):
        tv.get("other", "rows")


def test_task_values_outside_a_job() -> None:
    tv = TaskValues(None)
    assert tv.get("up", "rows", debugValue=0) == 0
    with pytest.raises(TypeError, match=r"^Must pass debugValue when calling get outside of a job context\."):
        tv.get("up", "rows", default=1)
    tv.set("k", [1, "a"])
    assert tv.values == {"k": [1, "a"]}
    tv.set("limit", "x" * (48 * 1024 - 2))  # exactly 48 KiB as JSON
    with pytest.raises(TaskValueError, match="48 KiB"):
        tv.set("over", "x" * (48 * 1024 - 1))


def test_exit_truncation_at_5_mb() -> None:
    assert truncate_exit("small") == ("small", False)
    value, truncated = truncate_exit("é" * EXIT_LIMIT_BYTES)
    assert truncated and len(value.encode()) <= EXIT_LIMIT_BYTES


def test_fs_maps_dbfs_and_file_paths(tmp_path: Path) -> None:
    fs = FsUtils(str(tmp_path / "dbfs"))
    assert fs.local_path("dbfs:/a/b") == tmp_path / "dbfs" / "a" / "b"
    assert fs.local_path("/a/b") == tmp_path / "dbfs" / "a" / "b"
    assert fs.local_path("a") == tmp_path / "dbfs" / "a"
    assert fs.local_path("file:/etc/hosts") == Path("/etc/hosts")
    with pytest.raises(DbfsError, match="leaves the DBFS root"):
        fs.local_path("dbfs:/../../etc")
    with pytest.raises(DbfsError, match="unsupported scheme"):
        fs.local_path("s3://bucket/key")


def test_fs_file_paths_are_listed_with_their_scheme(tmp_path: Path) -> None:
    fs = FsUtils(str(tmp_path / "dbfs"))
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "f.txt").write_text("abc")
    [info] = fs.ls(f"file:{tmp_path}/local")
    assert info.path == f"file:{tmp_path}/local/f.txt" and info.size == 3 and info.isFile()
    with pytest.raises(DbfsError, match="FileNotFoundException"):
        fs.head("dbfs:/none")


def test_secrets_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"db": {"password": "pw1"}}')
    monkeypatch.setenv("NBFLOW_SECRET__DB__PASSWORD", "pw-env")
    monkeypatch.setenv("NBFLOW_SECRET__MY_SCOPE__KEY_1", "k")
    redactor = Redactor()
    secrets = SecretsUtils(str(path), redactor)
    assert secrets.get("db", "password") == "pw-env"  # the environment wins
    assert secrets.get("my-scope", "key.1") == "k"
    assert [s.name for s in secrets.listScopes()] == ["db", "my_scope"]
    assert [m.key for m in secrets.list("db")] == ["password"]
    with pytest.raises(SecretNotFound, match="Secret does not exist with scope: db and key: nope"):
        secrets.get("db", "nope")
    with pytest.raises(SecretNotFound, match="Scope ghost does not exist"):
        secrets.list("ghost")
    assert redactor.text("pw-env and k") == "[REDACTED] and [REDACTED]"


def test_redactor_replaces_longest_first_and_walks_structures() -> None:
    redactor = Redactor()
    assert not redactor.active
    redactor.add("abc")
    redactor.add("abcdef")
    assert redactor.text("xabcdefx abc") == "x[REDACTED]x [REDACTED]"
    assert redactor.deep({"a": ["abc", 1, ("abc",)]}) == {"a": ["[REDACTED]", 1, ("[REDACTED]",)]}


@pytest.mark.parametrize(
    ("line", "path", "args"),
    [
        ("./lib/helpers", "./lib/helpers", {}),
        ('"../includes/configuration"', "../includes/configuration", {}),
        ("'/abs/path with space'", "/abs/path with space", {}),
        ('./x $a="1 2" $b=3 $c=\'q\'', "./x", {"a": "1 2", "b": "3", "c": "q"}),
    ],
)
def test_parse_run_line(line: str, path: str, args: dict[str, str]) -> None:
    assert parse_run_line(line) == (path, args)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (["%sql\n", "SELECT 1\n"], ["%%sql\n", "SELECT 1\n"]),
        (["%sh ls\n"], ["%%sh\n", "ls\n"]),
        (["\n", "%md\n", "# T\n"], ["%%md\n", "# T\n"]),
        (["%python\n", "x = 1\n"], ["x = 1\n"]),
        (["%skip\n", "x = 1\n"], ["%%skip\n", "x = 1\n"]),
        (["%run ./x\n"], ["%run ./x\n"]),
        (["x = 1\n"], ["x = 1\n"]),
    ],
)
def test_databricks_cell_magics_become_ipython_cell_magics(cell: list[str], expected: list[str]) -> None:
    assert databricks_cells(cell) == expected


def test_split_sql_respects_quotes_escapes_and_comments() -> None:
    from nbflow.runtime.magics import split_sql

    assert split_sql("select 'it\\'s; x'; -- a; b\n/* c; d */ select 2;;") == ["select 'it\\'s; x'", "select 2"]


def test_sql_literals_and_identifiers_are_escaped() -> None:
    from nbflow.runtime.sql_text import sql_ident as _ident
    from nbflow.runtime.sql_text import sql_string as _string

    assert _string("/p/a'b\\c") == "'/p/a\\'b\\\\c'"
    assert _ident("s`x.t") == "`s``x`.`t`"


def test_registry_generation_counts_every_change_and_unregister_checks_the_location(tmp_path: Path) -> None:
    from nbflow.catalog import Registry

    registry = Registry(tmp_path)
    assert registry.generation() == 0
    for n in range(50):  # many changes within one clock tick are all seen
        registry.register("t", f"/w/t{n}", "delta", True)
    assert registry.generation() == 50
    assert registry.unregister("t", "/w/other") is None  # re-created meanwhile: keep it
    assert registry.get("default.t") is not None and registry.get("main.default.t") is not None
    assert registry.unregister("main.default.t", "/w/t49") is not None
    assert registry.tables() == {} and registry.generation() == 51


class _FlakySpark:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def sql(self, query: str) -> str:
        self.calls.append(query)
        if len(self.calls) <= self.failures:
            raise RuntimeError("Failed to commit transaction: 0")
        return "done"


def test_dml_that_loses_a_commit_race_is_retried() -> None:
    from nbflow.runtime.lakehouse import _retry_conflicting_commits

    spark = _FlakySpark(failures=2)
    _retry_conflicting_commits(spark)
    assert spark.sql("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE") == "done"
    assert len(spark.calls) == 3


def test_other_statements_and_endless_conflicts_are_not_hidden() -> None:
    from nbflow.errors import NotebookRuntimeError
    from nbflow.runtime.lakehouse import COMMIT_ATTEMPTS, _retry_conflicting_commits

    select = _FlakySpark(failures=1)
    _retry_conflicting_commits(select)
    with pytest.raises(RuntimeError, match="Failed to commit"):
        select.sql("SELECT 1")
    endless = _FlakySpark(failures=100)
    _retry_conflicting_commits(endless)
    with pytest.raises(NotebookRuntimeError, match="Delta commit conflict"):
        endless.sql("update t set a = 1")
    assert len(endless.calls) == COMMIT_ATTEMPTS


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        # One pasted magic cell of a .py export: its prefixes off, then the magic as a cell magic.
        (["# MAGIC %sql\n", "# MAGIC SELECT 1\n"], ["%%sql\n", "SELECT 1\n"]),
        (["# DBTITLE 1,Totals\n", "# MAGIC %md\n", "# MAGIC # T\n"], ["%%md\n", "# T\n"]),
        # Several pasted cells: each in turn, a magic cell through run_cell_magic.
        (["# Databricks notebook source\n", "x = 1\n", "# COMMAND ----------\n", "# DBTITLE 1,Q\n",
          "# MAGIC %sql\n", "# MAGIC SELECT ${x}\n", "# COMMAND ----------\n", "\n", "print(x)\n"],
         ["x = 1\n", "get_ipython().run_cell_magic('sql', '', 'SELECT ${x}\\n')\n", "\n", "print(x)\n"]),
        # A comment that only looks like a marker, in a Python cell, stays.
        (["# MAGIC words\n", "x = 1\n"], ["# MAGIC words\n", "x = 1\n"]),
    ],
)
def test_source_pasted_from_a_workspace_export_runs_as_its_cells(cell: list[str], expected: list[str]) -> None:
    assert databricks_cells(cell) == expected


def test_an_interactive_notebook_finds_its_project_and_its_path(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.runtime import interactive

    repo = tmp_path / "repo"
    (repo / "src" / "notebooks").mkdir(parents=True)
    (repo / "databricks.yml").write_text("bundle: {name: b}\n")
    monkeypatch.delenv("NBFLOW_PROJECT_DIR", raising=False)
    monkeypatch.chdir(repo / "src" / "notebooks")
    assert interactive.find_project(repo / "src" / "notebooks") == repo.resolve()
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(tmp_path))
    assert interactive.find_project(repo / "src" / "notebooks") == tmp_path.resolve()
    monkeypatch.delenv("NBFLOW_PROJECT_DIR")
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)
    assert interactive.find_project(bare) == bare.resolve()  # no marker up to / (tmp has none): cwd

    class Shell:
        def __init__(self, **names: object) -> None:
            self.user_ns = names

    monkeypatch.setenv("JPY_SESSION_NAME", "src/notebooks/explore.ipynb")  # relative to Jupyter's root
    assert interactive.notebook_file(Shell()) == bare / "explore.ipynb"  # the kernel runs in its folder
    monkeypatch.setenv("JPY_SESSION_NAME", str(repo / "a.ipynb"))
    assert interactive.notebook_file(Shell()) == repo / "a.ipynb"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert interactive.notebook_file(Shell(__vsc_ipynb_file__=str(repo / "v.ipynb"))) == repo / "v.ipynb"
    assert interactive.notebook_file(Shell()) == bare / interactive.UNNAMED


def test_an_interactive_session_of_an_export_starts_from_its_saved_widget_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.runtime import interactive

    export = json.loads((Path(__file__).parent / "notebooks/sqlnb/export_sql.ipynb").read_text())
    export["metadata"]["nbflow_widgets"] = {"unit": "lb"}  # set in nbflow lab: wins over the export's
    notebook = tmp_path / "export.ipynb"
    notebook.write_text(json.dumps(export))
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    context = interactive.interactive_context(object())
    assert context.saved_widgets == {"region": "north", "unit": "lb"}
    # What this machine's panel kept last (.nbflow/jupyter/widget_values.json) wins over the file.
    values = tmp_path / ".nbflow/jupyter/widget_values.json"
    values.parent.mkdir(parents=True)
    values.write_text(json.dumps({str(notebook.resolve()): {"region": "west"}}))
    assert interactive.interactive_context(object()).saved_widgets == {"region": "west", "unit": "lb"}


def test_coverage_that_cannot_start_costs_a_warning_not_the_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from nbflow.runtime import coverage_hook

    bad = tmp_path / ".coveragerc"
    bad.write_text("[run]\nbranch = maybe\n")
    monkeypatch.setenv(coverage_hook.ENV, json.dumps({"data_file": str(tmp_path / ".coverage"), "rcfile": str(bad)}))
    coverage_hook.start()
    assert coverage_hook._active is None
    assert "nbflow: warning: coverage not measured" in capsys.readouterr().err
    coverage_hook.save()  # nothing to save: no error either
