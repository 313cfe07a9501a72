"""The sandbox: /Volumes, /dbfs and /Workspace are the project's folders for a notebook's Python,
its %sh cells, its dbutils.notebook.run children and the Sail server; the machine's own are never
created. Where there is no sandbox (NBFLOW_SANDBOX=0 here), the run says so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow import sandbox
from nbflow.catalog import Registry
from nbflow.project import dbfs_root, volumes_root, workspace_root

from .conftest import cli, gate_available  # noqa: F401 - the skipif condition below names it

MACHINE_PATHS = [Path("/Volumes"), Path("/dbfs"), Path("/Workspace")]


def _sandbox_here() -> str | None:
    """Why this machine cannot give the sandbox, or None (tried in a throwaway process)."""
    scratch = Path(subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp())"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    return sandbox._probe(sandbox.layout(scratch))


@pytest.fixture
def machine_untouched() -> Iterator[None]:
    """The test's proof that nothing lands at the machine's root: none of the three paths exists
    before (else the test cannot tell, and is skipped), and none exists after."""
    existing = [str(p) for p in MACHINE_PATHS if p.exists() or p.is_symlink()]
    if existing:
        pytest.skip(f"this machine has its own {', '.join(existing)}: the test could not tell nbflow's writes apart")
    yield
    created = [str(p) for p in MACHINE_PATHS if p.exists() or p.is_symlink()]
    assert created == [], f"created at the machine's root: {created}"


@pytest.fixture
def sandboxed() -> None:
    why = _sandbox_here()
    if why is not None:
        pytest.skip(f"no sandbox on this machine ({why}): the fallback is tested instead")


# A notebook's Python writes files where Databricks has them (DBFS, a volume, the workspace): what
# the engine must then read as the same files.
_PYTHON_WRITES = """
        os.makedirs('/dbfs/tmp', exist_ok=True)
        open('/dbfs/tmp/x.txt', 'w').write('one\\ntwo\\n')
        spark.sql('CREATE VOLUME IF NOT EXISTS main.default.v')
        open('/Volumes/main/default/v/c.csv', 'w').write('a,b\\n1,2\\n3,4\\n5,6\\n')
        os.makedirs('/Workspace/Shared', exist_ok=True)
        open('/Workspace/Shared/w.txt', 'w').write('w\\n')
"""


def _notebook(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    cells = textwrap.dedent(source).replace("\n# NEXT\n", "\n\n# COMMAND ----------\n\n")
    path.write_text("# Databricks notebook source\n" + cells, encoding="utf-8")
    return path


def _exit_value(proc: subprocess.CompletedProcess[str]) -> object:
    assert proc.returncode == 0, proc.stderr
    [task] = json.loads(proc.stdout)["tasks"]
    return json.loads(task["exit_value"])


@pytest.mark.kernel
@pytest.mark.spark  # a notebook that runs others starts the cluster, whose warm kernels run them
def test_python_sh_and_children_write_inside_the_project(project: Path, tmp_path: Path, machine_untouched: None,
                                                         sandboxed: None) -> None:
    _notebook(tmp_path, "child.py", """
        import json, os
        text = open('/Volumes/main/default/v/open.txt').read()
        open('/dbfs/tmp/from_child.txt', 'w').write('child')
        dbutils.notebook.exit(json.dumps({"read": text, "inside": os.environ.get("NBFLOW_SANDBOXED") is not None}))
        """)
    notebook = _notebook(tmp_path, "writes.py", """
        import json, os, pathlib
        import pandas as pd
        os.makedirs('/Volumes/main/default/v/made/deeper', exist_ok=True)
        with open('/Volumes/main/default/v/open.txt', 'w') as handle:
            handle.write('written by open()')
        pathlib.Path('/dbfs/tmp/lib').mkdir(parents=True, exist_ok=True)
        pathlib.Path('/dbfs/tmp/lib/path.txt').write_text('written by pathlib')
        os.makedirs('/Workspace/Shared', exist_ok=True)
        pd.DataFrame({'x': [1, 2, 3]}).to_csv('/Workspace/Shared/frame.csv', index=False)
        # NEXT
        # MAGIC %sh
        # MAGIC mkdir -p /Volumes/main/default/v/sh /dbfs/tmp/sh /Workspace/Shared/sh
        # MAGIC echo shell > /Volumes/main/default/v/sh/out.txt
        # MAGIC cp /Volumes/main/default/v/sh/out.txt /dbfs/tmp/sh/out.txt
        # MAGIC cp /dbfs/tmp/sh/out.txt /Workspace/Shared/sh/out.txt
        # NEXT
        child = json.loads(dbutils.notebook.run('./child', 60))
        dbutils.notebook.exit(json.dumps({"child": child, "csv_rows": len(pd.read_csv('/Workspace/Shared/frame.csv'))}))
        """)
    Registry(project).create_volume("main.default.v")  # before the kernels start
    out = _exit_value(cli("run", str(notebook), "--json"))
    assert out == {"child": {"read": "written by open()", "inside": True}, "csv_rows": 3}
    volume = volumes_root(project) / "main" / "default" / "v"
    dbfs, workspace = dbfs_root(project), workspace_root(project)
    assert volume == project / ".nbflow" / "volumes" / "main" / "default" / "v"
    assert (volume / "made" / "deeper").is_dir()
    assert (volume / "open.txt").read_text() == "written by open()"
    assert (dbfs / "tmp" / "lib" / "path.txt").read_text() == "written by pathlib"
    assert (workspace / "Shared" / "frame.csv").read_text().splitlines() == ["x", "1", "2", "3"]
    for shell_written in (volume / "sh" / "out.txt", dbfs / "tmp" / "sh" / "out.txt",
                          workspace / "Shared" / "sh" / "out.txt"):
        assert shell_written.read_text() == "shell\n"
    assert (dbfs / "tmp" / "from_child.txt").read_text() == "child"


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.skipif("not gate_available()", reason="no unprivileged user and network namespaces here: "
                    "Sail runs without the gate, and so without the sandbox")
@pytest.mark.parametrize("started_by", ["command line", "notebook"])
def test_the_sail_server_sees_the_files_python_wrote(project: Path, tmp_path: Path, machine_untouched: None,
                                                      sandboxed: None, started_by: str) -> None:
    if started_by == "command line":  # outside any sandbox: the gate makes its own
        started = cli("cluster", "start")
        assert started.returncode == 0, started.stderr
    notebook = _notebook(tmp_path, "spark_paths.py", """
        import json, os
        """ + _PYTHON_WRITES + """        lines = spark.read.text('dbfs:/tmp/x.txt').count()
        csv_rows = spark.sql("SELECT * FROM csv.`/Volumes/main/default/v/c.csv`").count()
        workspace_lines = spark.sql("SELECT * FROM text.`/Workspace/Shared/w.txt`").count()
        spark.range(4).write.mode('overwrite').parquet('/Workspace/Shared/written_by_spark')
        dbutils.notebook.exit(json.dumps([lines, csv_rows, workspace_lines]))
        """)
    # csv without a header: the header line is a row too.
    assert _exit_value(cli("run", str(notebook), "--json")) == [2, 4, 1]
    written = workspace_root(project) / "Shared" / "written_by_spark"
    assert any(p.suffix == ".parquet" for p in written.iterdir()), list(written.iterdir())


@pytest.mark.kernel
@pytest.mark.spark
@pytest.mark.jvm
def test_the_jvm_server_has_no_sandbox_and_gets_the_projects_folders_from_nbflow(
        project: Path, tmp_path: Path, machine_untouched: None, sandboxed: None) -> None:
    # The JVM engine's server started outside any sandbox (`nbflow cluster start --engine spark`):
    # no gate, no private mounts. Paths through nbflow's layers (Spark's readers and writers, SQL
    # path positions) are mapped to the project's folders before the server sees them, so a
    # notebook reads what its Python wrote as on Sail; paths nbflow does not see (a reader's
    # path option) are the machine's own, and the engine reports the project's real folders.
    started = cli("cluster", "start", "--engine", "spark", timeout=180)
    assert started.returncode == 0, started.stderr
    notebook = _notebook(tmp_path, "jvm_paths.py", """
        import json, os
        from pyspark.sql.functions import input_file_name
        """ + _PYTHON_WRITES + """        out = {"lines": spark.read.text('dbfs:/tmp/x.txt').count(),
               "csv_rows": spark.sql("SELECT * FROM csv.`/Volumes/main/default/v/c.csv`").count(),
               "workspace_lines": spark.sql("SELECT * FROM text.`/Workspace/Shared/w.txt`").count(),
               "seen_at": spark.read.text('/dbfs/tmp/x.txt').select(input_file_name()).first()[0]}
        spark.range(4).write.mode('overwrite').parquet('/Workspace/Shared/written_by_spark')
        try:
            spark.read.format('text').option('path', '/dbfs/tmp/x.txt').load().count()
        except Exception as exc:
            out["unmapped"] = str(exc).split("\\n")[0]
        dbutils.notebook.exit(json.dumps(out))
        """)
    out = _exit_value(cli("run", str(notebook), "--json", timeout=300))
    assert [out["lines"], out["csv_rows"], out["workspace_lines"]] == [2, 4, 1]  # as on Sail
    assert out["seen_at"] == f"file://{dbfs_root(project)}/tmp/x.txt"  # Sail in its sandbox: file:/dbfs/tmp/x.txt
    assert out["unmapped"].startswith("[PATH_NOT_FOUND] Path does not exist: file:/dbfs/tmp/x.txt")
    written = workspace_root(project) / "Shared" / "written_by_spark"
    assert any(p.suffix == ".parquet" for p in written.iterdir()), list(written.iterdir())
    from nbflow.cluster import server as cluster

    state = cluster.status(project)
    assert state is not None and state.engine == "spark" and state.socket is None and state.pid is not None
    # The machine's mount namespace, not a private one.
    assert Path(f"/proc/{state.pid}/ns/mnt").readlink() == Path("/proc/self/ns/mnt").readlink()


@pytest.mark.kernel
@pytest.mark.spark
def test_only_volumes_that_exist_take_python_and_sh_writes(project: Path, tmp_path: Path, machine_untouched: None,
                                                           sandboxed: None) -> None:
    # The child creates a volume while the parent kernel runs; the parent also has another
    # process (no kernel, no refresh of its own) create one and drop one through the registry.
    _notebook(tmp_path, "child.py", """
        spark.sql('CREATE VOLUME main.default.from_child')
        open('/Volumes/main/default/from_child/c.txt', 'w').write('child')
        dbutils.notebook.exit('ok')
        """)
    notebook = _notebook(tmp_path, "volumes.py", """
        import errno, json, os, subprocess, sys
        import pandas as pd
        from nbflow import sandbox
        out = {"may_mount": sandbox._may_mount()}  # the kernel did not exec since it unshared
        def refused(path):
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, 'w').write('x')
            except OSError as exc:
                return errno.errorcode[exc.errno]
            return 'written'
        out["before"] = refused('/Volumes/main/default/v/x.txt')
        spark.sql('CREATE VOLUME main.default.v')
        open('/Volumes/main/default/v/open.txt', 'w').write('open')
        pd.DataFrame({'x': [1, 2]}).to_csv('/Volumes/main/default/v/frame.csv', index=False)
        external = os.path.join(os.environ['NBFLOW_PROJECT_DIR'], 'external_data')
        spark.sql(f"CREATE EXTERNAL VOLUME main.default.ext LOCATION 'file:{external}'")
        open('/Volumes/main/default/ext/e.txt', 'w').write('external')
        out["never_created"] = refused('/Volumes/main/default/never_created/x.txt')
        out["beside_volumes"] = refused('/Volumes/main/default/stray.txt')
        # NEXT
        # MAGIC %sh
        # MAGIC echo shell > /Volumes/main/default/v/sh.txt
        # MAGIC mkdir -p /Volumes/main/default/never_created 2>/dev/null; echo $? > /Volumes/main/default/v/rc_mkdir.txt
        # MAGIC (echo shell > /Volumes/main/default/never.txt) 2>/dev/null; echo $? > /Volumes/main/default/v/rc.txt
        # NEXT
        out["child"] = dbutils.notebook.run('./child', 60)
        project = os.environ['NBFLOW_PROJECT_DIR']
        subprocess.run([sys.executable, '-c', 'import sys; from nbflow.catalog import Registry; '
                        'r = Registry(sys.argv[1]); r.create_volume("main.default.other"); '
                        'r.create_volume("main.default.gone"); r.drop_volume("main.default.gone")', project],
                       check=True)
        # NEXT
        out["other"] = refused('/Volumes/main/default/other/o.txt')
        out["from_child"] = refused('/Volumes/main/default/from_child/p.txt')
        out["gone"] = refused('/Volumes/main/default/gone/g.txt')
        subprocess.run([sys.executable, '-c', 'import sys; from nbflow.catalog import Registry; '
                        'Registry(sys.argv[1]).drop_volume("main.default.other")', project], check=True)
        spark.sql('DROP VOLUME main.default.from_child')
        out["dropped_here"] = refused('/Volumes/main/default/from_child/q.txt')
        # NEXT
        out["dropped_elsewhere"] = refused('/Volumes/main/default/other/o2.txt')
        dbutils.notebook.exit(json.dumps(out))
        """)
    out = _exit_value(cli("run", str(notebook), "--json", timeout=300))
    assert out == {"may_mount": True, "before": "EROFS", "never_created": "EROFS", "beside_volumes": "EROFS",
                   "child": "ok", "other": "written", "from_child": "written", "gone": "EROFS",
                   "dropped_here": "EROFS", "dropped_elsewhere": "EROFS"}
    volumes = volumes_root(project) / "main" / "default"
    assert (volumes / "v" / "open.txt").read_text() == "open"
    assert (volumes / "v" / "frame.csv").read_text().splitlines() == ["x", "1", "2"]
    assert (volumes / "v" / "sh.txt").read_text() == "shell\n"
    assert int((volumes / "v" / "rc_mkdir.txt").read_text()) != 0
    assert int((volumes / "v" / "rc.txt").read_text()) != 0
    assert (project / "external_data" / "e.txt").read_text() == "external"
    assert list((volumes / "ext").iterdir()) == []  # the external volume's mount point, empty
    # Nothing but the volumes left (the dropped ones' folders went, the refused writes made none).
    assert sorted(p.name for p in volumes.iterdir()) == ["ext", "v"]
    assert set(Registry(project).volumes()) == {"main.default.v", "main.default.ext"}
    Registry(project).drop_volume("main.default.ext")
    assert sorted(p.name for p in volumes.iterdir()) == ["v"]  # its mount point goes, its files stay
    assert (project / "external_data" / "e.txt").read_text() == "external"


def test_a_kernel_that_cannot_bind_volumes_gets_a_sandbox_of_its_own(tmp_path: Path, sandboxed: None) -> None:
    # A non-root kernel's children lose their capabilities at exec; a kernel among them (started
    # by dbutils.notebook.run) must still make the volumes created meanwhile writable. Dropping
    # CAP_SYS_ADMIN with setpriv stands for the non-root user (as root the capabilities stay).
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    script = textwrap.dedent("""
        import subprocess, sys
        from pathlib import Path
        from nbflow import sandbox
        from nbflow.catalog import Registry
        project = Path(sys.argv[1])
        registry = Registry(project)
        if sys.argv[2] == "parent":
            assert sandbox.enter(sandbox.layout(project)) is None
            sys.exit(subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
                                     sys.executable, __file__, sys.argv[1], "child"]).returncode)
        assert not sandbox._may_mount()
        assert sandbox.enter(sandbox.layout(project)) is None
        registry.create_volume("main.default.n")
        volumes = {n: v.location for n, v in registry.volumes().items()}
        problems = sandbox.refresh_volumes(registry.volumes_root, volumes)
        assert problems == [], problems
        open("/Volumes/main/default/n/x.txt", "w").write("from the child")
        """)
    (tmp_path / "nest.py").write_text(script, encoding="utf-8")
    project = tmp_path / "nested"
    project.mkdir()
    done = subprocess.run([sys.executable, str(tmp_path / "nest.py"), str(project), "parent"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (volumes_root(project) / "main" / "default" / "n" / "x.txt").read_text() == "from the child"


@pytest.mark.kernel
@pytest.mark.spark  # as above
def test_without_the_sandbox_one_warning_line_for_the_run_and_its_children(project: Path, tmp_path: Path) -> None:
    # Nothing is written at /: as root these writes would succeed there.
    _notebook(tmp_path, "child.py", """
        import os
        dbutils.notebook.exit(str(os.environ.get("NBFLOW_SANDBOXED")))
        """)
    notebook = _notebook(tmp_path, "looks.py", """
        import json, os
        child = dbutils.notebook.run('./child', 60)
        dbutils.notebook.exit(json.dumps({"inside": os.environ.get("NBFLOW_SANDBOXED"), "child": child}))
        """)
    proc = cli("run", str(notebook), "--json", env={"NBFLOW_SANDBOX": "0"})
    assert _exit_value(proc) == {"inside": None, "child": "None"}
    warnings = [line for line in proc.stderr.splitlines() if "sandbox" in line]
    assert warnings == [sandbox.fallback_warning("NBFLOW_SANDBOX=0")], proc.stderr
    assert "/Volumes, /dbfs and /Workspace are mapped only in nbflow's own layers" in warnings[0]


@pytest.mark.kernel
def test_without_the_sandbox_a_parallel_plan_warns_once(project: Path, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path, "task.py", "x = 1\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: no-sandbox\ntasks:\n" + "".join(
        f"  - task_key: t{n}\n    notebook: {notebook}\n" for n in range(3)), encoding="utf-8")
    proc = cli("run", str(plan), "--mode", "parallel", "--json", env={"NBFLOW_SANDBOX": "0"})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "sandbox" in line]
    assert warnings == [sandbox.fallback_warning("NBFLOW_SANDBOX=0")], proc.stderr


def test_a_sandbox_that_cannot_be_made_says_why_and_changes_nothing(tmp_path: Path) -> None:
    # A project under the machine's /Workspace would vanish from the sandbox's view: refused.
    plan = sandbox.Layout(((sandbox.DBFS, str(tmp_path / "d")), (sandbox.VOLUMES, str(tmp_path / "v")),
                           (sandbox.WORKSPACE, "/Workspace/project/.nbflow/workspace")), str(tmp_path / "root"))
    done = subprocess.run([sys.executable, "-m", "nbflow.sandbox", "--probe", plan.to_json()],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    if sys.platform.startswith("linux") and _sandbox_here() is None:
        assert done.stdout.strip() == ("the folder for /Workspace /Workspace/project/.nbflow/workspace is under "
                                       "/Workspace, which the sandbox replaces")
    assert not Path("/Workspace/project").exists()


def test_host_and_sandbox_paths(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volumes, workspace = project / ".nbflow" / "volumes", project / ".nbflow" / "workspace" / "tree"
    assert volumes_root(project) == volumes and workspace_root(project) == workspace
    assert sandbox.host_path("/Volumes/main/default/v/t", project) == str(volumes / "main/default/v/t")
    assert sandbox.host_path("/Volumes", project) == str(volumes)
    assert sandbox.host_path("/dbfs/tmp/x.csv", project) == str(project / ".nbflow/dbfs/tmp/x.csv")
    assert sandbox.host_path("dbfs:/tmp/x.csv", project) == str(project / ".nbflow/dbfs/tmp/x.csv")
    assert sandbox.host_path("dbfs:/Volumes/main/s/v/f", project) == str(volumes / "main/s/v/f")
    assert sandbox.host_path("/Workspace/Shared/a.py", project) == str(workspace / "Shared/a.py")
    # Not Databricks paths, or not below one once normalised: unchanged.
    assert sandbox.host_path("/dbfs/../etc/passwd", project) == "/dbfs/../etc/passwd"
    assert sandbox.host_path("/Volumesque/x", project) == "/Volumesque/x"
    assert sandbox.host_path("/tmp/x", project) == "/tmp/x"
    assert sandbox.host_path("relative/x", project) == "relative/x"
    for shown in ("/Volumes/main/default/v/t", "/dbfs/tmp/x.csv", "/Workspace/Shared/a.py", "/Volumes"):
        assert sandbox.sandbox_path(sandbox.host_path(shown, project), project) == shown
    assert sandbox.sandbox_path("/tmp/x", project) == "/tmp/x"
    # The project's DBFS root may be elsewhere (NBFLOW_DBFS_ROOT): both directions follow it.
    monkeypatch.setenv("NBFLOW_DBFS_ROOT", str(project / "elsewhere"))
    assert sandbox.host_path("/dbfs/a", project) == str(project / "elsewhere" / "a")
    assert sandbox.sandbox_path(str(project / "elsewhere" / "a")) == "/dbfs/a"  # the current project by default


def test_a_run_with_the_switch_off_does_not_turn_the_sandbox_off_for_later_runs(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandboxed: None) -> None:
    plan = sandbox.layout(project)
    monkeypatch.delenv(sandbox.STATE_ENV, raising=False)
    monkeypatch.setenv(sandbox.SWITCH_ENV, "0")
    assert sandbox.decide(plan) == "NBFLOW_SANDBOX=0"
    assert sandbox.decide(plan) == "NBFLOW_SANDBOX=0"
    assert capsys.readouterr().err.splitlines() == [sandbox.fallback_warning("NBFLOW_SANDBOX=0")]
    monkeypatch.delenv(sandbox.SWITCH_ENV)
    assert sandbox.decide(plan) is None  # probed again: the switch was a choice, not the machine's answer
    assert capsys.readouterr().err == ""


@pytest.mark.spark
@pytest.mark.skipif("not gate_available()", reason="no unprivileged user and network namespaces here: no gate")
def test_a_gate_whose_sandbox_fails_still_guards_the_cluster_and_says_so_once(
        project: Path, monkeypatch: pytest.MonkeyPatch, machine_untouched: None) -> None:
    from nbflow.cluster import attach as cluster_attach
    from nbflow.cluster import commands as cluster_commands
    from nbflow.cluster import server as cluster

    real = cluster_commands.gate_command

    def refused_folders(project: Path, socket_file: Path, engine_command: list[str]) -> list[str]:
        # The volumes' folder under the machine's /Workspace: the gate's mount part refuses it.
        command = real(project, socket_file, engine_command)
        command[command.index("--volumes") + 1] = "/Workspace/elsewhere/volumes"
        return command

    monkeypatch.setattr(cluster_commands, "gate_command", refused_folders)
    state = cluster.start(project, "sail")
    assert state.socket is not None and state.access.startswith("gate:")
    assert cluster_attach.attach(state).range(3).count() == 3
    log = Path(state.log).read_text(encoding="utf-8").splitlines()
    warnings = [line for line in log if "warning" in line]
    assert warnings == ["nbflow-gate: warning: no sandbox for the sail server (the folder for /Volumes "
                        "/Workspace/elsewhere/volumes is under /Workspace, which the sandbox replaces): paths under "
                        "/Volumes, /dbfs and /Workspace in its SQL are the machine's own"]


@pytest.mark.kernel
@pytest.mark.spark
def test_a_job_of_the_local_workspace_sees_its_files_at_slash_workspace(project: Path, machine_untouched: None,
                                                                        sandboxed: None) -> None:
    import base64
    import time

    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat, Language

    from nbflow.serve.server import WorkspaceServer

    reader = ("# Databricks notebook source\n"
              "text = open('/Workspace/Shared/team/data.txt').read()\n"
              "open('/Workspace/Shared/team/written.txt', 'w').write(text.upper())\n"
              "dbutils.notebook.exit(text)\n")
    srv = WorkspaceServer(project, "dapi-sandbox-token")
    srv.start()
    try:
        w = WorkspaceClient(host=srv.url, token="dapi-sandbox-token", auth_type="pat")
        w.workspace.mkdirs("/Shared/team")
        w.workspace.import_("/Shared/team/data.txt", content=base64.b64encode(b"from the workspace").decode(),
                            format=ImportFormat.RAW)
        w.workspace.import_("/Shared/team/reader", content=base64.b64encode(reader.encode()).decode(),
                            format=ImportFormat.SOURCE, language=Language.PYTHON)
        run = w.jobs.submit(run_name="reads", tasks=[jobs.SubmitTask(
            task_key="reads", notebook_task=jobs.NotebookTask(notebook_path="/Shared/team/reader"))]).response
        deadline = time.monotonic() + 180
        while (done := w.jobs.get_run(run.run_id)).state and done.state.life_cycle_state in (
                jobs.RunLifeCycleState.PENDING, jobs.RunLifeCycleState.RUNNING, jobs.RunLifeCycleState.QUEUED):
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.5)
        output = w.jobs.get_run_output((done.tasks or [])[0].run_id)
        assert output.notebook_output is not None, output.error
        assert output.notebook_output.result == "from the workspace"
    finally:
        srv.stop()
    assert (workspace_root(project) / "Shared" / "team" / "written.txt").read_text() == "FROM THE WORKSPACE"
