"""The runtime objects real notebooks reach for, in real kernels: databricks.sdk.runtime,
pyspark.dbutils, dbruntime, SparkSession entry points, display, help, the notebook context,
restartPython, and what is (not) captured as user variables."""

from __future__ import annotations

import getpass
import json
import textwrap
from pathlib import Path

import pytest

from .conftest import exit_json, run
from .conftest import source_notebook as notebook

pytestmark = pytest.mark.kernel


def test_sdk_runtime_and_dbruntime_give_the_kernels_objects(project: Path) -> None:
    nb = notebook(project / "sdk.py", """
        import json
        mine = {name: globals()[name] for name in ("dbutils", "spark", "display", "displayHTML", "getArgument", "sc")}
        from databricks.sdk.runtime import *
        from databricks.sdk.runtime import dbutils as d2, spark as s2, display as disp2, displayHTML as html2
        from databricks.sdk.runtime import getArgument as arg2, sql as sql2, table as table2, sc as sc2
        import databricks.sdk.runtime as sdk_runtime
        from pyspark.dbutils import DBUtils
        import pyspark.dbutils
        from dbruntime.dbutils import FileInfo
        from dbruntime.databricks_repl_context import get_context
        dbutils.widgets.text("w", "default")
        outcome = {
            "remote": sdk_runtime.is_local_implementation,
            "same": [d2 is mine["dbutils"], s2 is mine["spark"], disp2 is mine["display"],
                     html2 is mine["displayHTML"], sc2 is mine["sc"], dbutils is mine["dbutils"]],
            "getArgument": arg2("w"),
            "DBUtils": [DBUtils(None) is mine["dbutils"], pyspark.dbutils.DBUtils(spark) is dbutils],
            "FileInfo": FileInfo("dbfs:/a", "a", 1, 0).isFile(),
            "callables": [callable(sql2), callable(table2), callable(udf)],
            "repl_path": get_context().notebookPath,
        }
        dbutils.notebook.exit(json.dumps(outcome))
    """)
    outcome = exit_json(run(nb))
    assert outcome["remote"] is False  # databricks.sdk.runtime took the runtime's namespace
    assert outcome["same"] == [True] * 6
    assert outcome["getArgument"] == "default"
    assert outcome["DBUtils"] == [True, True]
    assert outcome["FileInfo"] is True
    assert outcome["callables"] == [True, True, True]
    assert outcome["repl_path"] == f"/Users/{getpass.getuser()}/project/sdk"


def test_display_of_pandas_matplotlib_html_and_databricks_keywords(project: Path) -> None:
    nb = notebook(project / "show.py", """
        import json
        import matplotlib
        matplotlib.use("agg")
        from matplotlib.figure import Figure
        import pandas as pd
        from IPython.utils.capture import capture_output

        def shown(call):
            with capture_output() as cap:
                call()
            return [sorted(o.data) for o in cap.outputs]

        fig = Figure()
        fig.add_subplot().plot([1, 2, 3])
        frame = pd.DataFrame({"a": range(1500)})
        with capture_output() as cap:
            display(frame, streamName="s", checkpointLocation="/tmp/x", trigger="1 second")
        html = cap.outputs[0].data["text/html"]
        outcome = {
            "figure": shown(lambda: display(fig)),
            "html": shown(lambda: displayHTML("<b>hi</b>")),
            "nothing": shown(lambda: display()),
            "pandas_rows": html.count("<tr>"),
            "pandas_note": cap.outputs[0].data["text/plain"].splitlines()[-1],
            "payload": cap.outputs[0].data["application/vnd.nbflow.table+json"],
            "count_in_html": "showing 1000 of 1000+ rows" in html and "a: int64" in html,
        }
        dbutils.notebook.exit(json.dumps(outcome))
    """)
    outcome = exit_json(run(nb))
    assert "image/png" in outcome["figure"][0]
    assert "text/html" in outcome["html"][0]
    assert outcome["nothing"] == []
    assert outcome["pandas_rows"] >= 1000  # the first 1000 rows (and the header), not pandas' 60
    assert outcome["pandas_note"] == "(showing 1000 of 1000+ rows)" and outcome["count_in_html"]
    payload = outcome["payload"]
    assert payload["schema"] == [{"name": "a", "type": "int64"}] and payload["more"] is True
    assert payload["shown"] == len(payload["rows"]) == 1000 and payload["rows"][:2] == [[0], [1]]


def test_help_on_dbutils_and_every_utility(project: Path) -> None:
    nb = notebook(project / "helps.py", """
        import contextlib, io, json
        def printed(call):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                call()
            return out.getvalue()
        outcome = {"dbutils": printed(dbutils.help), "fs_cp": printed(lambda: dbutils.fs.help("cp"))}
        for name in ("widgets", "notebook", "jobs", "fs", "secrets", "library"):
            outcome[name] = printed(getattr(dbutils, name).help)
        outcome["taskValues"] = printed(dbutils.jobs.taskValues.help)
        dbutils.notebook.exit(json.dumps(outcome))
    """)
    outcome = exit_json(run(nb))
    assert "library: restartPython" in outcome["dbutils"]
    assert "widgets: combobox, dropdown, get, getAll, getArgument" in outcome["dbutils"]
    assert "snapshot" not in outcome["widgets"] and "dropdown(" in outcome["widgets"]
    assert "run(" in outcome["notebook"] and "entry_point" in outcome["notebook"]
    assert "restartPython()" in outcome["library"]
    assert "set(" in outcome["taskValues"] and "taskValues" in outcome["jobs"]
    assert "ls(" in outcome["fs"] and "local_path" not in outcome["fs"]
    assert "listScopes(" in outcome["secrets"]
    assert outcome["fs_cp"].startswith("dbutils.fs.cp(from_")


def test_notebook_context_through_entry_point(project: Path) -> None:
    nb = notebook(project / "etl" / "load.py", """
        import json
        ctx = dbutils.notebook.entry_point.getDbutils().notebook().getContext()
        try:
            ctx.apiToken().get()
            token_error = None
        except Exception as exc:
            token_error = str(exc)
        outcome = {
            "path": ctx.notebookPath().get(),
            "same_path": dbutils.entry_point.getDbutils().notebook().getContext().notebookPath().getOrElse(None),
            "user": ctx.tags().apply("user"),
            "user_name": ctx.userName().get(),
            "job": [ctx.tags().get("jobId").isDefined(), "user" in ctx.tags()],
            "run": ctx.currentRunId().getOrElse(None),
            "token": ctx.apiToken().getOrElse(None),
            "token_error": token_error,
            "safe": json.loads(ctx.safeToJson())["attributes"]["notebook_path"],
            "tags_json": json.loads(ctx.toJson())["tags"]["user"],
        }
        dbutils.notebook.exit(json.dumps(outcome))
    """)
    user = getpass.getuser()
    outcome = exit_json(run(nb))
    assert outcome["path"] == outcome["same_path"] == outcome["safe"] == f"/Users/{user}/project/etl/load"
    assert outcome["user"] == outcome["user_name"] == outcome["tags_json"] == user
    assert outcome["job"] == [False, True]
    assert outcome["run"] is None and outcome["token"] is None
    assert "None.get" in outcome["token_error"] and "no workspace API" in outcome["token_error"]
    # As a job task, the run has a run id.
    as_task = exit_json(run(nb, run_id="run-7", context={"job_task_values": {}}))
    assert as_task["run"] == "run-7"


def test_notebook_in_the_local_workspace_tree_has_its_workspace_path(project: Path) -> None:
    nb = notebook(project / ".nbflow" / "workspace" / "tree" / "Users" / "ann@example.com" / "nb.py", """
        dbutils.notebook.exit(dbutils.notebook.entry_point.getDbutils().notebook().getContext().notebookPath().get())
    """)
    assert run(nb).exit_value == "/Users/ann@example.com/nb"


def test_unused_parameter_warning_only_when_the_notebook_ran_to_its_end(project: Path) -> None:
    failing = notebook(project / "fails_early.py", "raise ValueError('before the widget')",
                       "x = dbutils.widgets.get('p')")
    result = run(failing, {"p": "1"})
    assert result.status == "FAILED"
    assert not any("was passed but" in w for w in result.warnings)
    exited = notebook(project / "exits_early.py", "dbutils.notebook.exit('early')", "x = dbutils.widgets.get('p')")
    assert not any("was passed but" in w for w in run(exited, {"p": "1"}).warnings)
    complete = notebook(project / "never_reads.py", "x = 1")
    assert run(complete, {"p": "1"}).warnings == [
        "parameter 'p' was passed but the notebook has no widget or parameter of that name"]


def test_restart_python_resets_the_namespace_and_keeps_widgets(project: Path) -> None:
    nb = notebook(project / "restarts.py", """
        import os
        dbutils.widgets.text("w", "default")
        dbutils.widgets.dropdown("d", "a", ["a", "b"])
        dbutils.jobs.taskValues.set("before", 1)
        before = 1
        with open("pid.txt", "w") as f:
            f.write(str(os.getpid()))
    """, """
        print("restarting")
        dbutils.library.restartPython()
        print("never printed")
    """, """
        import json, os
        dbutils.notebook.exit(json.dumps({
            "before_kept": "before" in globals(),
            "new_process": open("pid.txt").read() != str(os.getpid()),
            "w": dbutils.widgets.get("w"),
            "d": dbutils.widgets.get("d"),
            "cwd": os.getcwd(),
        }))
    """)
    result = run(nb, {"w": "passed"}, run_id="r1", context={"job_task_values": {}})
    outcome = exit_json(result)
    assert outcome == {"before_kept": False, "new_process": True, "w": "passed", "d": "a",
                       "cwd": str(project)}
    assert result.task_values == {"before": 1}  # set before the restart, kept as on Databricks
    assert set(result.parameters) == {"w", "d"}
    cells = json.loads(Path(result.output).read_text())["cells"]
    restart_cell = next(c for c in cells if "restartPython" in "".join(c["source"]))
    text = "".join("".join(o.get("text", "")) + "".join(o.get("traceback", [])) for o in restart_cell["outputs"])
    assert "restarting" in text and "never printed" not in text
    assert "Restarting Python" in text
    assert restart_cell["metadata"]["papermill"]["status"] == "completed"


FAKE_DATABRICKS_CONNECT = '''
class _Builder:
    def profile(self, name):
        return self

    def serverless(self, enabled=True):
        return self

    def validateSession(self):
        return self

    def getOrCreate(self):
        raise RuntimeError("databricks-connect would ask a workspace for credentials here")

    create = getOrCreate


class _BuilderProperty:
    def __get__(self, obj, cls):
        return cls.Builder()


class DatabricksSession:
    Builder = _Builder
    builder = _BuilderProperty()
'''


@pytest.mark.spark
def test_every_session_entry_point_gives_the_kernels_session(project: Path) -> None:
    # databricks-connect cannot be installed beside pyspark (it ships its own pyspark): a small
    # package with its DatabricksSession API stands for it.
    fake = project / "fake" / "databricks" / "connect"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_DATABRICKS_CONNECT)
    nb = notebook(project / "sessions.py", """
        import json
        from pyspark.sql import SparkSession, functions as F
        from pyspark.sql.connect.session import SparkSession as ConnectSession
        from IPython.utils.capture import capture_output
        plus_one = F.udf(lambda x: x + 1, "int")  # before `spark` was used: needs the session
        active = SparkSession.getActiveSession()
        built = SparkSession.builder.appName("mine").config("spark.sql.shuffle.partitions", "3").getOrCreate()
        rows = [r.x for r in spark.range(3).select(plus_one("id").alias("x")).collect()]
        with capture_output() as cap:
            spark.range(2).display()
        outcome = {
            "same": [active is spark, built is spark, SparkSession.active() is spark,
                     SparkSession.builder.getOrCreate() is spark, ConnectSession.builder.getOrCreate() is spark],
            "rows": rows,
            "partitions": spark.conf.get("spark.sql.shuffle.partitions"),
            "cluster": spark.conf.get("spark.databricks.clusterUsageTags.clusterName"),
            "path": spark.conf.get("spark.databricks.notebook.path"),
            "tags": [t["key"] for t in json.loads(spark.conf.get("spark.databricks.clusterUsageTags.clusterAllTags"))],
            "display": [sorted(o.data) for o in cap.outputs],
        }
    """, """
        import os, pkgutil, sys
        sys.path.insert(0, os.path.abspath("fake"))
        import databricks
        databricks.__path__ = pkgutil.extend_path(databricks.__path__, "databricks")
        from databricks.connect import DatabricksSession
        from databricks.sdk.runtime import *
        remote = DatabricksSession.builder.profile("DEFAULT").serverless(True).validateSession().getOrCreate()
        outcome["databricks_connect"] = remote is spark
        x = 1
        also_spark = SparkSession.getActiveSession()
        dbutils.notebook.exit(json.dumps(outcome))
    """)
    result = run(nb)
    outcome = exit_json(result)
    assert outcome["same"] == [True] * 5
    assert outcome["rows"] == [1, 2, 3]
    assert outcome["partitions"] == "3"  # builder options reach the session, as Spark Connect applies them
    assert outcome["cluster"] == "nbflow-local"
    assert outcome["path"] == f"/Users/{getpass.getuser()}/project/sessions"
    assert outcome["tags"] == ["ClusterId", "ClusterName", "Creator", "Vendor"]
    assert outcome["display"] and "text/html" in outcome["display"][0]
    assert outcome["databricks_connect"] is True
    # The runtime's names are never user variables, also once `spark` is the attached session,
    # imported again from databricks.sdk.runtime, or held under another name.
    assert {"rows", "x", "outcome"} <= set(result.variables)
    assert not set(result.variables) & {"spark", "dbutils", "display", "displayHTML", "sc", "sqlContext", "sql",
                                        "table", "udf", "getArgument", "active", "built", "also_spark", "remote"}


@pytest.mark.spark
def test_restart_python_in_a_plan_task_with_spark(project: Path) -> None:
    from .conftest import cli

    notebook(project / "a.py", """
        dbutils.widgets.text("w", "x")
        dbutils.jobs.taskValues.set("k", spark.range(5).count())
    """, "dbutils.library.restartPython()", """
        dbutils.jobs.taskValues.set("w", dbutils.widgets.get("w"))
        dbutils.jobs.taskValues.set("rows", spark.range(3).count())
    """)
    notebook(project / "b.py", """
        get = dbutils.jobs.taskValues.get
        dbutils.notebook.exit(f"{get('a', 'k')}/{get('a', 'w')}/{get('a', 'rows')}")
    """)
    (project / "plan.yaml").write_text(textwrap.dedent("""
        name: restart
        tasks:
          - {task_key: a, notebook: a.py, parameters: {w: fromplan}}
          - {task_key: b, notebook: b.py, depends_on: [a]}
    """))
    done = cli("run", str(project / "plan.yaml"), "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    tasks = {t["task_key"]: t for t in json.loads(done.stdout)["tasks"]}
    assert tasks["b"]["exit_value"] == "5/fromplan/3"
