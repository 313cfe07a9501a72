"""nbflow's pytest plugin (``pytest --nbflow``), run by pytest's own ``pytester`` in a fresh
folder: notebooks and plans collected, run, reported (failures, skips, JUnit), and checked
against the golden store."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel]
pytest_plugins = ["pytester"]

GOOD = """# Databricks notebook source
# nbflow-markers: smoke
dbutils.widgets.text("n", "3")
n = int(dbutils.widgets.get("n"))
print("n is", n)

# COMMAND ----------

dbutils.notebook.exit(str(n * 2))
"""

BAD = """# Databricks notebook source
x = 1

# COMMAND ----------

# DBTITLE 1,Divide
print("about to divide")
y = x / 0
"""

PLAN = """name: checks
tasks:
  - task_key: first
    notebook: bad.py
  - task_key: second
    notebook: good.py
    depends_on: [first]
  - task_key: alone
    notebook: good.py
"""


@pytest.fixture
def folder(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(pytester.path))
    monkeypatch.delenv("CI", raising=False)
    (pytester.path / "good.py").write_text(GOOD)
    (pytester.path / "bad.py").write_text(BAD)
    (pytester.path / "plan.yaml").write_text(PLAN)
    (pytester.path / "helper.py").write_text("def f():\n    return 1\n")  # a module, not a notebook
    (pytester.path / "nbflow.params.yaml").write_text('good.py:\n  small: {n: "1"}\n  big: {n: "100"}\n')
    pytester.makeini("[pytest]\nmarkers =\n    smoke: quick notebooks\n")
    return pytester.path


def test_notebooks_and_plan_tasks_are_items_with_failures_skips_and_junit(pytester: pytest.Pytester,
                                                                          folder: Path) -> None:
    collected = pytester.runpytest_subprocess("--nbflow", "--collect-only", "-q")
    assert collected.outlines[:6] == ["bad.py::bad.py", "good.py::good.py[small]", "good.py::good.py[big]",
                                      "plan.yaml::first", "plan.yaml::second", "plan.yaml::alone"]
    assert "no tests collected" in pytester.runpytest_subprocess("--collect-only", "-q").stdout.str()  # opt-in

    done = pytester.runpytest_subprocess("--nbflow", "-rs", "--junitxml=junit.xml")
    done.assert_outcomes(passed=3, failed=2, skipped=1)
    out = done.stdout.str()
    # The failing cell by number and title, its source, traceback, printed output and executed notebook.
    assert "bad.py: FAILED in cell 2 (Divide): ZeroDivisionError: division by zero" in out
    assert "--- source ---\nprint(\"about to divide\")\ny = x / 0" in out
    assert "--- output (last 1 lines) ---\nabout to divide" in out
    assert "executed notebook: " + str(folder / "processed" / "pytest-") in out
    # The task whose upstream failed is skipped, where the plan declares it, with the reason.
    assert "SKIPPED [1] plan.yaml:5: second: not run: run_if ALL_SUCCESS not met" in out
    cases = {c.get("name"): c for c in ET.parse(folder / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == {"bad.py", "good.py[small]", "good.py[big]", "first", "second", "alone"}
    props = {p.get("name"): p.get("value") for p in cases["good.py[big]"].iter("property")}
    assert props["status"] == "SUCCESS" and props["exit_value"] == "200" and Path(props["executed_notebook"]).is_file()
    failed = {p.get("name"): p.get("value") for p in cases["first"].iter("property")}
    assert failed["failing_cell"] == "cell 2 (Divide)" and cases["first"].find("failure") is not None
    assert cases["bad.py"].get("classname") == "bad"  # never an empty JUnit name

    smoke = pytester.runpytest_subprocess("--nbflow", "-m", "smoke", "-q", "-p", "no:cacheprovider")
    smoke.assert_outcomes(passed=2, deselected=4)  # the marker from the notebook's header line
    again = pytester.runpytest_subprocess("--nbflow", "--collect-only", "-q")
    assert again.outlines[:6] == collected.outlines[:6]  # executed notebooks (processed/) are not tests
    assert (folder / "processed").is_dir()

    # -k picks tasks: the plan runs those and what they depend on (second's upstream failed, so
    # second is skipped as in the whole run), nothing else.
    for picked, outcome, ran in (("alone", {"passed": 1}, {"alone"}),
                                 ("second", {"skipped": 1}, {"first", "second"})):
        shutil.rmtree(folder / "processed")
        pytester.runpytest_subprocess("--nbflow", "plan.yaml", "-k", picked).assert_outcomes(**outcome, deselected=2)
        (run_json,) = (folder / "processed").rglob("run.json")
        tasks = json.loads(run_json.read_text())["tasks"]
        assert {t["task_key"] for t in tasks} == ran, tasks  # the run's tasks: those it was asked for


def test_goldens_are_written_checked_and_fail_with_a_readable_difference(pytester: pytest.Pytester,
                                                                         folder: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--nbflow", "-k", "small", "--nbflow-golden-level=result,outputs"]
    missing = pytester.runpytest_subprocess(*args, "--nbflow-golden=check")
    missing.assert_outcomes(passed=1)  # locally a missing golden only warns
    assert "no golden at" in missing.stdout.str()
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess(*args, "--nbflow-golden=check").assert_outcomes(failed=1)
    pytester.runpytest_subprocess(*args, "--nbflow-golden=update-missing").assert_outcomes(passed=1)
    golden = folder / "__nbflow_golden__" / "good.py" / "small"
    assert json.loads((golden / "result.json").read_text())["exit_value"] == "2"
    # Levels include those below them: outputs brings tables (none written here) and result.
    assert sorted(p.name for p in golden.iterdir()) == ["outputs.json", "result.json", "tables.json", "timings.json"]
    assert json.loads((golden / "tables.json").read_text()) == {}
    pytester.runpytest_subprocess(*args, "--nbflow-golden=check").assert_outcomes(passed=1)

    (folder / "good.py").write_text(GOOD.replace('print("n is", n)', 'print("n =", n)'))
    differs = pytester.runpytest_subprocess(*args, "--nbflow-golden=check")
    differs.assert_outcomes(failed=1)
    out = differs.stdout.str()
    assert "differs from its golden: 1 difference (outputs 1)" in out
    assert "-n is 1" in out and "+n = 1" in out
    # An nbval sanitizer file, as nbval users have them, makes the two texts one.
    (folder / "sanitize.cfg").write_text("[wording]\nregex: n (is|=) \nreplace: n: \n")  # nbval's format
    pytester.runpytest_subprocess(*args, "--nbflow-golden=check", "--nbflow-sanitize-with", "sanitize.cfg"
                                  ).assert_outcomes(passed=1)
    # Only the result checked: the printed text does not count.
    pytester.runpytest_subprocess("--nbflow", "-k", "small", "--nbflow-golden=check",
                                  "--nbflow-golden-level=result").assert_outcomes(passed=1)
    pytester.runpytest_subprocess(*args, "--nbflow-golden=update").assert_outcomes(passed=1)
    assert "n = 1" in (golden / "outputs.json").read_text()

    # A plan's golden also keeps each task's state: a task that ran and now is skipped differs.
    monkeypatch.delenv("CI")  # a task with no golden yet (second, below) then only warns
    plan_args = ["--nbflow", "plan.yaml", "--nbflow-golden-level=result", "--nbflow-golden=check"]
    written = pytester.runpytest_subprocess(*plan_args, "--nbflow-golden=update-missing")
    written.assert_outcomes(passed=2, failed=1, skipped=1)  # alone, (plan); first; second
    assert "plan.yaml::(plan) PASSED" in pytester.runpytest_subprocess(*plan_args, "-v").stdout.str()
    states = json.loads((folder / "__nbflow_golden__" / "plan.yaml" / "(plan)" / "plan.json").read_text())
    assert states == {"result_state": "FAILED",
                      "tasks": {"alone": "SUCCESS", "first": "FAILED", "second": "UPSTREAM_FAILED"}}
    (folder / "plan.yaml").write_text(PLAN.replace("    depends_on: [first]\n", "    depends_on: [first]\n"
                                                   "    run_if: ALL_DONE\n"))
    now = pytester.runpytest_subprocess(*plan_args)
    now.assert_outcomes(passed=2, failed=2)  # second runs now; the plan's golden says it did not
    assert "plan › tasks › second" in now.stdout.str() and "+ SUCCESS_WITH_FAILURES" in now.stdout.str()


WRITER = """# Databricks notebook source
dbutils.widgets.text("rows", "3")
spark.range(int(dbutils.widgets.get("rows"))).selectExpr("id", "id * 10 AS tenfold") \\
    .write.mode("overwrite").saveAsTable("main.default.tenfold")
"""

ADDER = """# Databricks notebook source
# MAGIC %sql
# MAGIC INSERT INTO main.default.tenfold VALUES (7, 70)

# COMMAND ----------

from delta.tables import DeltaTable
DeltaTable.forName(spark, "main.default.tenfold").update("id = 0", {"tenfold": "-1"})
"""

READER = """# Databricks notebook source
assert spark.table("main.default.tenfold").count() == 4
spark.sql("SELECT * FROM main.default.tenfold").collect()
"""

TABLES_PLAN = """name: tables
tasks:
  - task_key: write
    notebook: writer.py
  - task_key: add
    notebook: adder.py
    depends_on: [write]
  - task_key: read
    notebook: reader.py
    depends_on: [add]
"""

HAND_WRITTEN = '''
from nbflow.testing import assert_df_equal, assert_table


def test_the_writer(nbflow_run, nbflow_golden):
    result = nbflow_run("writer.py", {"rows": "2"})
    assert result.ok, result.error
    assert_table("tenfold", [{"id": 0, "tenfold": 0}, {"id": 1, "tenfold": 10}])
    assert_df_equal([(1, 10), (0, 0)], [{"id": 0, "tenfold": 0}, {"id": 1, "tenfold": 10}])
    nbflow_golden(result, levels="result")
'''


@pytest.mark.spark
def test_tables_written_are_kept_in_goldens_and_fixtures_run_and_assert(pytester: pytest.Pytester,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(pytester.path))
    monkeypatch.delenv("CI", raising=False)
    (pytester.path / "writer.py").write_text(WRITER)
    try:
        # The default levels: result and tables. The table the notebook wrote is in the golden, whole.
        pytester.runpytest_subprocess("--nbflow", "--nbflow-golden=update-missing", "writer.py"
                                      ).assert_outcomes(passed=1)
        golden = pytester.path / "__nbflow_golden__" / "writer.py" / "default"
        tables = json.loads((golden / "tables.json").read_text())
        assert tables["main.default.tenfold"]["row_count"] == 3
        assert tables["main.default.tenfold"]["data"] == [{"id": 0, "tenfold": 0}, {"id": 1, "tenfold": 10},
                                                          {"id": 2, "tenfold": 20}]
        pytester.runpytest_subprocess("--nbflow", "--nbflow-golden=check", "writer.py").assert_outcomes(passed=1)
        changed = pytester.runpytest_subprocess("--nbflow", "--nbflow-golden=check", "--nbflow-param", "rows=4",
                                                "writer.py")
        changed.assert_outcomes(failed=1)
        out = changed.stdout.str()
        assert "tables › main.default.tenfold › row_count" in out and "result › parameters › rows" in out

        # A plan's tasks: each golden holds the tables its own notebook wrote (by SQL, the
        # DataFrame API or DeltaTable), as they are once the plan has ended; a reader's holds none.
        (pytester.path / "adder.py").write_text(ADDER)
        (pytester.path / "reader.py").write_text(READER)
        (pytester.path / "tables.plan.yaml").write_text(TABLES_PLAN)
        pytester.runpytest_subprocess("--nbflow", "--nbflow-golden=update-missing", "tables.plan.yaml"
                                      ).assert_outcomes(passed=4)  # three tasks and the plan's states
        plan_golden = pytester.path / "__nbflow_golden__" / "tables.plan.yaml"
        final = [{"id": 0, "tenfold": -1}, {"id": 1, "tenfold": 10}, {"id": 2, "tenfold": 20}, {"id": 7, "tenfold": 70}]
        for task in ("write", "add"):
            found = json.loads((plan_golden / task / "tables.json").read_text())
            assert list(found) == ["main.default.tenfold"] and found["main.default.tenfold"]["data"] == final, task
        assert json.loads((plan_golden / "read" / "tables.json").read_text()) == {}
        pytester.runpytest_subprocess("--nbflow", "--nbflow-golden=check", "tables.plan.yaml"
                                      ).assert_outcomes(passed=4)

        pytester.makepyfile(test_by_hand=HAND_WRITTEN)
        first = pytester.runpytest_subprocess("test_by_hand.py")
        first.assert_outcomes(failed=1)  # nbflow_golden: no golden yet, and the test asked for a check
        assert "--nbflow-golden=update-missing writes it" in first.stdout.str()
        pytester.runpytest_subprocess("test_by_hand.py", "--nbflow-golden=update-missing").assert_outcomes(passed=1)
        pytester.runpytest_subprocess("test_by_hand.py").assert_outcomes(passed=1)
    finally:
        from .conftest import cli

        cli("cluster", "stop", env={"NBFLOW_PROJECT_DIR": str(pytester.path)})


OVERWRITER = """# Databricks notebook source
import time
spark.range({rows}).write.mode("overwrite").saveAsTable("main.default.shared")
time.sleep(4)  # the other item writes the same table meanwhile, when they share a project
assert spark.table("main.default.shared").count() == {rows}
"""


@pytest.mark.spark
def test_xdist_workers_each_have_a_project_of_their_own(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(pytester.path))
    for name, rows in (("three", 3), ("five", 5)):
        (pytester.path / f"{name}.py").write_text(OVERWRITER.format(rows=rows))
    before = {p.pid for p in psutil.process_iter()}
    done = pytester.runpytest_subprocess("--nbflow", "-n", "2", "-p", "no:cacheprovider")
    done.assert_outcomes(passed=2)
    workers = sorted(p.name for p in (pytester.path / ".nbflow" / "pytest").iterdir())
    assert workers == ["gw0", "gw1"]
    from nbflow.pool_service import sizes

    share = max(2, sizes()[0] // 2)  # the two workers' clusters share the cores: half the warm kernels each
    for worker in workers:  # each wrote its own table, in its own catalog
        tables = json.loads((pytester.path / ".nbflow/pytest" / worker / ".nbflow/catalog/tables.json").read_text())
        assert "main.default.shared" in json.dumps(tables)
        log = (pytester.path / ".nbflow/pytest" / worker / ".nbflow/cluster/server.log").read_text()
        assert f"{share} warm workers" in log, log[-2000:]
    assert not (pytester.path / ".nbflow/catalog/tables.json").exists()  # the project's own: untouched
    left = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
            and str(pytester.path) in " ".join(p.info["cmdline"] or [])]
    assert not left, f"left running: {left}"  # each worker's cluster stopped with it


def test_nbflow_run_writes_junit_xml_for_a_plan_and_a_notebook(folder: Path) -> None:
    from .conftest import cli

    done = cli("run", str(folder / "plan.yaml"), "--junit-xml", str(folder / "plan.xml"), timeout=300)
    assert done.returncode == 1, done.stderr  # a task failed
    suite = ET.parse(folder / "plan.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        "checks", "3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["first"].find("failure").get("message") == "FAILED: ZeroDivisionError: division by zero"  # type: ignore[union-attr]
    assert cases["second"].find("skipped").get("message") == "not run: run_if ALL_SUCCESS not met"  # type: ignore[union-attr]
    assert {p.get("name"): p.get("value") for p in cases["alone"].iter("property")}["exit_value"] == "6"
    done = cli("run", str(folder / "good.py"), "-p", "n=4", "--junit-xml", str(folder / "nb.xml"), timeout=300)
    assert done.returncode == 0, done.stderr
    [case] = ET.parse(folder / "nb.xml").getroot().iter("testcase")
    assert (case.get("classname"), case.get("name")) == ("good", "good.py") and case.find("failure") is None


@pytest.mark.spark
@pytest.mark.serve
def test_the_same_items_run_in_a_workspace_through_the_remote_adapter(pytester: pytest.Pytester, folder: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from databricks.sdk import WorkspaceClient

    from nbflow.serve.server import WorkspaceServer

    token = "dapi-pytest-remote"
    server = WorkspaceServer(folder, token)  # nbflow serve: a local workspace for the real databricks-sdk
    server.start()
    try:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", token)
        done = pytester.runpytest_subprocess("--nbflow", "--nbflow-target=databricks", "-rs", "-k",
                                             "small or first or second or alone", "--junitxml=remote.xml",
                                             "--nbflow-golden=update-missing")
        done.assert_outcomes(passed=2, failed=1, skipped=1)
        out = done.stdout.str()
        assert "SKIPPED [1] plan.yaml:5: second: not run" in out
        cases = {c.get("name"): c for c in ET.parse(folder / "remote.xml").getroot().iter("testcase")}
        props = {p.get("name"): p.get("value") for p in cases["good.py[small]"].iter("property")}
        assert props["status"] == "SUCCESS" and props["exit_value"] == "2"
        assert "executed_notebook" not in props  # a workspace run leaves none here
        assert json.loads((folder / "__nbflow_golden__/good.py/small/result.json").read_text())["exit_value"] == "2"
        w = WorkspaceClient(host=server.url, token=token, auth_type="pat")
        names = sorted(j.settings.name for j in w.jobs.list() if j.settings and j.settings.name)
        # The plan's deployment stays (nbflow remote destroy removes it); a staged notebook's is gone.
        assert names == ["checks [parallel]", "checks [sequential]"]
    finally:
        server.stop()
        from .conftest import cli

        cli("cluster", "stop", env={"NBFLOW_PROJECT_DIR": str(folder)})  # the one the workspace's runs used


def test_notebooks_run_in_their_own_folder_unless_told_otherwise(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(pytester.path))
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "where.py").write_text(
        "# Databricks notebook source\nimport os\ndbutils.notebook.exit(os.getcwd())\n")

    def ran_in(*options: str) -> str:
        done = pytester.runpytest_subprocess("--nbflow", "--junitxml=where.xml", *options)
        done.assert_outcomes(passed=1)
        [case] = ET.parse(pytester.path / "where.xml").getroot().iter("testcase")
        return {p.get("name"): p.get("value") for p in case.iter("property")}["exit_value"] or ""

    assert ran_in() == str(pytester.path / "sub")  # as on Databricks
    assert ran_in("--nbflow-cwd=rootdir") == str(pytester.path)
    bad = pytester.runpytest_subprocess("--nbflow", "--nbflow-cwd=nowhere")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "nbflow: --nbflow-cwd 'nowhere': notebook, rootdir or an existing folder" in bad.stderr.str()


SHAPES = """def area(w, h):
    return w * h


def perimeter(w, h):
    total = 2 * (w + h)
    return total
"""

USES_SHAPES = """# Databricks notebook source
import shapes
assert shapes.area(2, 3) == 6
"""


def test_coverage_of_what_notebooks_import_is_measured_in_their_kernels(pytester: pytest.Pytester,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import coverage

    monkeypatch.setenv("NBFLOW_PROJECT_DIR", str(pytester.path))
    monkeypatch.delenv("COVERAGE_FILE", raising=False)
    (pytester.path / "shapes.py").write_text(SHAPES)
    (pytester.path / "uses.py").write_text(USES_SHAPES)

    def missing_lines() -> list[int]:
        measured = coverage.Coverage(data_file=str(pytester.path / ".coverage"))
        measured.load()
        return list(measured.analysis2(str(pytester.path / "shapes.py"))[3])

    done = pytester.runpytest_subprocess("--nbflow", "uses.py", "--nbflow-cov", "shapes")
    done.assert_outcomes(passed=1)
    assert "nbflow: coverage of what notebooks imported: 60%" in done.stdout.str()  # 3 of 5 statements
    assert missing_lines() == [6, 7]  # perimeter's body: the notebook never called it
    assert not list(pytester.path.glob(".coverage.*"))  # the kernels' files, combined
    # With pytest-cov, its report takes the kernels' data in.
    (pytester.path / ".coverage").unlink()
    with_cov = pytester.runpytest_subprocess("--nbflow", "uses.py", "--nbflow-cov", "shapes", "--cov=shapes",
                                             "--cov-report=term-missing")
    with_cov.assert_outcomes(passed=1)
    assert any(line.split()[:1] == ["shapes.py"] and line.split()[-1] == "6-7" for line in with_cov.outlines), \
        with_cov.stdout.str()
