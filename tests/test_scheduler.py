"""Plan runs: run_if, leaf-task results, references and task values, retries, timeouts, faults,
--only/--from/--fail-fast, Ctrl-C, and the JSON and run.json shapes."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbflow.runs import decide

from .conftest import as_from_a_terminal, cli

PLANS = Path(__file__).parent / "plans"


def run_plan(name: str, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    proc = cli("run", str(PLANS / name), "--json", *args, timeout=timeout)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, summary, proc.stderr


def states(summary: dict[str, Any]) -> dict[str, str]:
    return {t["task_key"]: t["status"] for t in summary["tasks"]}


@pytest.mark.parametrize(
    ("run_if", "deps", "expected"),
    [
        ("ALL_SUCCESS", ["SUCCESS", "EXCLUDED"], (True, "")),
        ("ALL_SUCCESS", ["SUCCESS", "FAILED"], (False, "UPSTREAM_FAILED")),
        ("AT_LEAST_ONE_SUCCESS", ["FAILED", "SUCCESS"], (True, "")),
        ("AT_LEAST_ONE_SUCCESS", ["FAILED", "TIMEDOUT"], (False, "UPSTREAM_FAILED")),
        ("NONE_FAILED", ["SUCCESS", "EXCLUDED"], (True, "")),
        ("NONE_FAILED", ["SUCCESS", "UPSTREAM_FAILED"], (False, "UPSTREAM_FAILED")),
        ("ALL_DONE", ["FAILED", "TIMEDOUT"], (True, "")),
        ("ALL_DONE", ["CANCELED"], (True, "")),
        ("AT_LEAST_ONE_FAILED", ["SUCCESS", "FAILED"], (True, "")),
        ("AT_LEAST_ONE_FAILED", ["SUCCESS", "SUCCESS"], (False, "EXCLUDED")),
        ("ALL_FAILED", ["FAILED", "TIMEDOUT"], (True, "")),
        ("ALL_FAILED", ["FAILED", "SUCCESS"], (False, "EXCLUDED")),
        ("ALL_DONE", ["EXCLUDED", "EXCLUDED"], (False, "EXCLUDED")),
        ("ALL_SUCCESS", ["CANCELED", "SUCCESS"], (False, "UPSTREAM_CANCELED")),
        ("ALL_SUCCESS", [], (True, "")),
    ],
)
def test_run_if(run_if: str, deps: list[str], expected: tuple[bool, str]) -> None:
    assert decide(run_if, deps) == expected


@pytest.mark.kernel
def test_task_values_references_and_job_parameters_flow_downstream(project: Path) -> None:
    code, summary, _ = run_plan("values.yaml", "-p", "env=prod")
    assert code == 0 and summary["status"] == "SUCCESS"
    consumer = next(t for t in summary["tasks"] if t["task_key"] == "consumer")
    assert json.loads(consumer["exit_value"]) == {"ref": "40/set/prod", "get": 40, "env": "prod"}
    run_json = json.loads((Path(summary["output_dir"]) / "run.json").read_text())
    assert run_json["state"] == {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
    assert run_json["run_duration"] >= 0 and run_json["job_parameters"] == [{"name": "env", "value": "prod"}]
    # Setup is the wait for the first warm kernel; the rest of the run is execution.
    assert 0 < run_json["setup_duration"] < run_json["run_duration"]
    durations = run_json["setup_duration"] + run_json["execution_duration"] + run_json["cleanup_duration"]
    assert durations == run_json["run_duration"]
    producer = next(t for t in run_json["tasks"] if t["task_key"] == "producer")
    assert producer["task_values"] == {"rows": 40} and producer["notebook_output"]["result"] == "set"
    assert (Path(summary["output_dir"]) / "producer.log").is_file()  # each task's printed output
    assert {"task_key", "run_id", "state", "start_time", "end_time", "attempt_number", "execution_duration",
            "setup_duration", "cleanup_duration", "run_duration", "depends_on", "run_if"} <= set(producer)
    assert set(summary["tasks"][0]) >= {"task_key", "notebook", "status", "exit_value", "output", "duration_s",
                                        "error"}


@pytest.mark.kernel
def test_retries_wait_their_interval_and_timeouts_are_not_retried_by_default(project: Path) -> None:
    code, summary, _ = run_plan("retries.yaml", "--mode", "parallel")
    assert states(summary) == {"flaky": "SUCCESS", "nap": "TIMEDOUT"}
    assert summary["status"] == "TIMEDOUT" and code == 1
    run_json = json.loads((Path(summary["output_dir"]) / "run.json").read_text())
    flaky = next(t for t in run_json["tasks"] if t["task_key"] == "flaky")
    attempts = flaky["attempts"]
    assert [a["result_state"] for a in attempts] == ["FAILED", "FAILED", "SUCCESS"]
    assert all(b["start_time"] - a["start_time"] >= 1500 for a, b in itertools.pairwise(attempts))
    assert flaky["attempt_number"] == 2 and flaky["notebook_output"]["result"] == "succeeded on attempt 3"
    nap = next(t for t in run_json["tasks"] if t["task_key"] == "nap")
    assert len(nap["attempts"]) == 1 and nap["execution_duration"] < 15000  # retry_on_timeout is false


@pytest.mark.kernel
def test_a_killed_kernel_fails_its_task_only(project: Path) -> None:
    code, summary, stderr = run_plan("faults.yaml", "--mode", "parallel")
    assert states(summary) == {"die": "FAILED", "independent": "SUCCESS", "after_die": "UPSTREAM_FAILED"}
    die = next(t for t in summary["tasks"] if t["task_key"] == "die")
    assert die["error"]["ename"] == "DeadKernelError"
    assert summary["status"] == "FAILED" and code == 1  # after_die is a leaf and did not succeed
    assert f"to re-run what did not succeed: nbflow run {PLANS / 'faults.yaml'} --repair {summary['output_dir']}" \
        f" --mode parallel" in stderr


@pytest.mark.kernel
def test_the_job_timeout_stops_the_run(project: Path) -> None:
    started = time.monotonic()
    code, summary, _ = run_plan("jobtimeout.yaml")
    assert time.monotonic() - started < 40
    assert summary["status"] == "TIMEDOUT" and code == 1
    assert states(summary) == {"nap": "TIMEDOUT", "later": "CANCELED"}


@pytest.mark.kernel
def test_leaf_results_only_from_and_fail_fast(project: Path) -> None:
    code, summary, _ = run_plan("chain.yaml")
    assert states(summary) == {"a": "SUCCESS", "b": "FAILED", "c": "UPSTREAM_FAILED", "d": "SUCCESS"}
    assert summary["status"] == "FAILED"
    code, summary, _ = run_plan("chain.yaml", "--only", "a", "--only", "d")
    assert states(summary) == {"a": "SUCCESS", "d": "SUCCESS"} and code == 0
    code, summary, _ = run_plan("chain.yaml", "--from", "b")
    assert states(summary) == {"b": "FAILED", "c": "UPSTREAM_FAILED"}
    code, summary, _ = run_plan("chain.yaml", "--fail-fast")
    assert states(summary)["b"] == "FAILED" and states(summary)["d"] in ("SUCCESS", "CANCELED")
    assert states(summary)["c"] in ("UPSTREAM_FAILED", "CANCELED")


def test_bad_plan_arguments_exit_2(project: Path) -> None:
    code, _, stderr = run_plan("values.yaml", "-p", "nope=1")
    assert code == 2 and "has no job parameter 'nope'" in stderr
    code, _, stderr = run_plan("values.yaml", "--only", "ghost")
    assert code == 2 and "no task 'ghost'" in stderr
    code, _, stderr = run_plan("cycle.yaml")
    assert code == 2 and "dependency cycle" in stderr


@pytest.mark.kernel
def test_ctrl_c_cancels_the_plan_and_leaves_nothing_running(project: Path, tmp_path: Path) -> None:
    # No job timeout here: on a busy machine it could expire before the interrupt (TIMEDOUT).
    plan = tmp_path / "nap.yaml"
    plan.write_text(f"name: nap\ntasks:\n  - task_key: nap\n    notebook: {PLANS / 'nb' / 'nap.py'}\n"
                    f"  - task_key: later\n    notebook: {PLANS / 'nb' / 'ok.py'}\n    depends_on: [nap]\n")
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", "run", str(plan), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                            preexec_fn=as_from_a_terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(project.glob("processed/*/nap.ipynb")):
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    summary = json.loads(out)
    assert states(summary)["nap"] == "CANCELED"
    assert (Path(summary["output_dir"]) / "run.json").is_file()


@pytest.mark.kernel
def test_report_html_has_the_timeline(project: Path) -> None:
    _, summary, _ = run_plan("chain.yaml")
    page = (Path(summary["output_dir"]) / "report.html").read_text()
    assert "<svg" in page and page.count("<rect") == 3 and "boom" in page and "UPSTREAM_FAILED" in page


@pytest.mark.kernel
@pytest.mark.spark
def test_compare_resets_tables_between_runs(project: Path) -> None:
    from nbflow.catalog import Registry

    before = cli("run", str(PLANS.parent / "notebooks" / "spark" / "writer.py"), "-p", "table=made_by_plan",
                 "-p", "rows=10")
    assert before.returncode == 0, before.stderr
    proc = cli("compare", str(PLANS / "spark_tables.yaml"), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    seq, par = data["runs"]
    assert (seq["mode"], par["mode"]) == ("sequential", "parallel")
    assert seq["status"] == par["status"] == "SUCCESS"
    assert seq["speedup"] == 1.0 and par["speedup"] > 0 and 0 < par["efficiency"] <= par["speedup"]
    assert par["task_s"] > 0 and par["workers"] == 3
    assert "reset: dropped main.default.also_made" in proc.stderr  # made by the first run
    assert "reset: restored main.default.made_by_plan to version 0" in proc.stderr  # there before: put back
    assert set(Registry(project).tables()) == {"main.default.made_by_plan", "main.default.also_made"}
    assert (Path(data["output_dir"]) / "report.html").read_text().count("<h2>") >= 3


def test_a_reference_to_a_task_left_out_fails_the_task_instead_of_hanging(project: Path) -> None:
    code, summary, _ = run_plan("resume_refs.yaml", "--from", "consumer", timeout=60)
    [consumer] = summary["tasks"]
    assert consumer["status"] == "FAILED" and code == 1
    assert "producer" in consumer["error"]["evalue"]


@pytest.mark.kernel
def test_the_job_timeout_cuts_a_retry_wait_short(project: Path) -> None:
    started = time.monotonic()
    code, summary, _ = run_plan("retry_wait.yaml", timeout=60)
    assert time.monotonic() - started < 15  # not the 20 s retry interval
    assert summary["status"] == "TIMEDOUT" and code == 1
    assert summary["tasks"][0]["attempts"] == 1


@pytest.mark.kernel
def test_a_terminal_gets_a_live_table(project: Path) -> None:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", "run", str(PLANS / "chain.yaml")],
                            stdout=slave, stderr=slave, env=os.environ.copy())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other side closed: the run is over
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode(errors="replace"))
    assert "┃ task" in screen and "UPSTREAM_FAILED" in screen
    assert "started (attempt" not in screen  # the table replaces the event lines


@pytest.mark.kernel
def test_a_killed_worker_fails_its_task_only_and_is_replaced(project: Path) -> None:
    # Three tasks kill their worker (a sequential pool has two): the last task needs a replacement.
    code, summary, _ = run_plan("worker_faults.yaml")
    assert states(summary) == {"kill_1": "FAILED", "kill_2": "FAILED", "kill_3": "FAILED", "after": "SUCCESS"}
    for task in summary["tasks"][:3]:
        assert task["error"]["ename"] == "WorkerError"
        assert "the worker process died (killed by signal 9)" in task["error"]["evalue"]
        assert Path(task["output"]).is_file()  # the notebook as far as it got is kept
    assert code == 0 and summary["status"] == "SUCCESS_WITH_FAILURES"  # only the leaf decides


@pytest.mark.kernel
@pytest.mark.spark
def test_a_warm_kernel_runs_the_task_in_its_folder_with_spark_attached_ahead(project: Path) -> None:
    code, summary, stderr = run_plan("warm.yaml", timeout=300)
    assert code == 0, stderr
    here, preattached, value, rows = summary["tasks"][0]["exit_value"].split("|")
    assert (here, preattached, value, rows) == (str(PLANS / "nb"), "True", "imported", "3")


@pytest.mark.kernel
def test_repair_reruns_what_failed_with_the_kept_tasks_values_and_parameters(project: Path) -> None:
    flag = project / "flag"
    code, first, stderr = run_plan("repair.yaml", "-p", "env=prod", "-p", f"flag={flag}")
    assert states(first) == {"producer": "SUCCESS", "gate": "FAILED", "consumer": "UPSTREAM_FAILED"}
    hint = re.search(r"to re-run what did not succeed: (nbflow run .*)", stderr)
    assert hint and f"--repair {first['output_dir']}" in hint.group(1)
    flag.touch()
    code, repaired, _ = run_plan("repair.yaml", "--repair", first["output_dir"])
    assert code == 0 and states(repaired) == {"producer": "SUCCESS", "gate": "SUCCESS", "consumer": "SUCCESS"}
    assert not (Path(repaired["output_dir"]) / "producer.ipynb").exists()  # kept, not run again
    consumer = next(t for t in repaired["tasks"] if t["task_key"] == "consumer")
    # The kept producer's task value and exit value, and the first run's job parameters.
    assert json.loads(consumer["exit_value"]) == {"ref": "40/set/prod", "get": 40, "env": "prod"}
    code, _, stderr = run_plan("values.yaml", "--repair", first["output_dir"])
    assert code == 2 and "a run of plan 'repair', not of 'values'" in stderr
