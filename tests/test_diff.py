"""``nbflow diff`` and what it stands on (snapshots, sanitizers, tolerances), on executed notebooks
written here as nbflow writes them: no kernel needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbflow.errors import InputError
from nbflow.testing.differences import Options, compare
from nbflow.testing.sanitize import Sanitizer
from nbflow.testing.snapshot import read_snapshot

from .conftest import cli

TABLE = "application/vnd.nbflow.table+json"


def executed(path: Path, *, exit_value: str = "42", printed: str = "total 10\n", rows: list[list[Any]] | None = None,
             status: str = "SUCCESS", duration: float = 1.0, run_id: str = "20261128-101010-abcdef",
             source: str = "print(total)") -> Path:
    """An executed notebook as nbflow writes it: cells with papermill's metadata, the payload."""
    rows = [[1, "a"], [2, "b"]] if rows is None else rows
    table = {"schema": [["id", "bigint"], ["name", "string"]], "rows": rows, "shown": len(rows), "more": False}
    cells = [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
         "source": "n = 3", "execution_count": 1},
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# Totals"},
        {"cell_type": "code", "id": "c1", "metadata": {"title": "Sum", "papermill": {"duration": duration}},
         "execution_count": 2, "source": source,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]},
        {"cell_type": "code", "id": "c2", "metadata": {"papermill": {"duration": 0.5}}, "execution_count": 3,
         "source": "display(df)",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {TABLE: table, "text/html": f"<table>{run_id}</table>", "text/plain": "df"}}]},
    ]
    payload = {"version": 1, "notebook": "nb.py", "status": status, "exit_value": exit_value,
               "variables": {"total": {"type": "int", "value": 10}}, "parameters": {"n": {"value": "3"}},
               "task_values": {}, "run_id": run_id, "duration_s": duration + 0.5}
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": cells, "metadata": {"nbflow": payload}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def test_two_runs_that_differ_only_in_run_ids_times_and_paths_are_the_same(tmp_path: Path) -> None:
    a = executed(tmp_path / "a.ipynb", printed=f"wrote {tmp_path}/x at 2026-11-28T10:10:10Z, id "
                                              "0b7c3f8e-1d2a-4c5b-9e8f-0123456789ab\n")
    b = executed(tmp_path / "b.ipynb", run_id="20261129-090909-fedcba",
                 printed=f"wrote {tmp_path}/x at 2026-11-29T08:00:01.5+01:00, id "
                         "11111111-2222-4333-8444-555555555555\n")
    assert compare(read_snapshot(a), read_snapshot(b), Options(sanitizer=Sanitizer(roots=[tmp_path]))) == []
    done = cli("diff", str(a), str(b))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no differences" in done.stdout


def test_differences_are_found_by_layer_and_cell_and_exit_1(tmp_path: Path) -> None:
    a = executed(tmp_path / "a.ipynb")
    b = executed(tmp_path / "b.ipynb", exit_value="43", printed="total 11\n", rows=[[1, "a"], [3, "c"]])
    found = {d.where: d for d in compare(read_snapshot(a), read_snapshot(b))}
    assert found["result › exit_value"].a == "42" and found["result › exit_value"].b == "43"
    assert "outputs › cell 2 (Sum) › [1] › text" in found
    assert "outputs › cell 3 › [1] › table › rows › [2] › [1]" in found  # rows sorted, then compared
    done = cli("diff", str(a), str(b), "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["same"] is False and report["counts"] == {"outputs": 3, "result": 1}
    markdown = cli("diff", str(a), str(b), "--format", "markdown").stdout
    assert markdown.startswith("### nbflow diff: 4 differences") and "| result › exit_value | `42` | `43` |" in markdown
    page = cli("diff", str(a), str(b), "--format", "html", "-o", str(tmp_path / "d.html"))
    assert page.returncode == 1 and "<table>" in (tmp_path / "d.html").read_text()


def test_fail_on_limits_what_changes_the_exit_code(tmp_path: Path) -> None:
    a = executed(tmp_path / "a.ipynb")
    b = executed(tmp_path / "b.ipynb", printed="total 11\n")
    done = cli("diff", str(a), str(b), "--fail-on", "result")
    assert done.returncode == 0, done.stdout  # shown, not failing
    assert "1 difference (outputs 1); 0 count toward the exit code" in done.stdout
    assert cli("diff", str(a), str(b), "--layers", "result").stdout.strip().endswith("no differences")


def test_tolerances_row_order_and_timings(tmp_path: Path) -> None:
    a = executed(tmp_path / "a.ipynb", printed="mean 0.333333\n", duration=1.0)
    b = executed(tmp_path / "b.ipynb", printed="mean 0.333334\n", rows=[[2, "b"], [1, "a"]], duration=9.0)
    plain = compare(read_snapshot(a), read_snapshot(b))
    assert [d.layer for d in plain] == ["outputs", "timings", "timings"]  # the number; cell 2 and the total
    assert not [d for d in compare(read_snapshot(a), read_snapshot(b), Options(rtol=1e-5)) if d.layer != "timings"]
    ordered = compare(read_snapshot(a), read_snapshot(b), Options(rtol=1e-5, row_order=True))
    assert any("table › rows" in d.where for d in ordered)
    slow = {d.where: d.note for d in plain if d.layer == "timings"}
    assert slow == {"timings › total_s": "slower in B: 6.33x",
                    "timings › cells › cell 2 (Sum)": "slower in B: 9.00x"}
    assert not [d for d in compare(read_snapshot(a), read_snapshot(b), Options(slowdown=10.0)) if d.layer == "timings"]
    assert cli("diff", str(a), str(b), "--rtol", "1e-5").returncode == 0  # timings are shown, not failing


def test_run_folders_of_a_plan_are_compared_task_by_task(tmp_path: Path) -> None:
    def plan_run(folder: Path, state: str, exit_value: str) -> Path:
        executed(folder / "load.ipynb", exit_value=exit_value)
        tasks = [{"task_key": "load", "state": {"result_state": state},
                  "attempts": [{"output": str(folder / "load.ipynb")}]},
                 {"task_key": "report", "attempts": [],
                  "state": {"result_state": "UPSTREAM_FAILED" if state == "FAILED" else "SUCCESS"}}]
        (folder / "run.json").write_text(json.dumps({"format": "MULTI_TASK", "state": {"result_state": state},
                                                     "tasks": tasks}))
        return folder

    a = plan_run(tmp_path / "one", "SUCCESS", "1")
    b = plan_run(tmp_path / "two", "FAILED", "2")
    found = {d.where for d in compare(read_snapshot(a), read_snapshot(b))}
    assert {"plan › result_state", "plan › tasks › load", "plan › tasks › report",
            "result › load › exit_value"} <= found
    moved = tmp_path / "moved"
    a.rename(moved)  # run.json names the old paths: the notebook is found beside it
    assert read_snapshot(moved).layers["result"]["load"]["exit_value"] == "1"


def test_two_folders_of_runs_are_matched_by_relative_path(tmp_path: Path) -> None:
    executed(tmp_path / "a" / "x" / "nb.ipynb")
    executed(tmp_path / "a" / "only_a.ipynb")
    executed(tmp_path / "b" / "x" / "nb.ipynb", exit_value="0")
    done = cli("diff", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json")
    assert done.returncode == 1
    wheres = [d["where"] for d in json.loads(done.stdout)["differences"]]
    assert wheres == ["only_a.ipynb", "x/nb.ipynb › result › exit_value"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = cli("diff", str(tmp_path / "nope.ipynb"), str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nope.ipynb: no such file" in done.stderr
    done = cli("diff", str(executed(tmp_path / "a.ipynb")), str(executed(tmp_path / "b.ipynb")), "--layers", "cells")
    assert done.returncode == 2 and "--layers 'cells'" in done.stderr
    (tmp_path / "plain.ipynb").write_text(json.dumps({"nbformat": 4, "cells": [], "metadata": {}}))
    done = cli("diff", str(tmp_path / "plain.ipynb"), str(tmp_path / "a.ipynb"))
    assert done.returncode == 2 and "not a notebook executed by nbflow" in done.stderr


def test_dates_in_data_are_data_and_user_rows_named_cell_are_not_merged(tmp_path: Path) -> None:
    a = executed(tmp_path / "a.ipynb", exit_value="due 2024-01-01 10:00:00")
    b = executed(tmp_path / "b.ipynb", exit_value="due 2031-12-31 23:59:59")
    assert {d.where for d in compare(read_snapshot(a), read_snapshot(b))} == {"result › exit_value"}
    from nbflow.testing.snapshot import Snapshot

    def table(*values: int) -> Snapshot:
        return Snapshot("x", "notebook", {"tables": {"t": {"data": [{"cell": "x", "v": v} for v in values]}}})

    assert [d.where for d in compare(table(1, 2), table(2, 2))] == ["tables › t › data › [1] › v"]
    assert Sanitizer().text("at 2024-01-01 10:00:00", "outputs") == "at <datetime>"  # printed text: it is


def test_the_presets_named_are_the_presets_made() -> None:
    from nbflow.testing.sanitize import PRESETS, _presets

    assert tuple(r.name for r in _presets()) == PRESETS


def test_user_sanitizers_and_leaving_presets_out() -> None:
    sanitizer = Sanitizer(["took \\d+ ms=>took N ms"])
    assert sanitizer.text("took 31 ms at 12:01:02") == "took N ms at <time>"
    assert Sanitizer(off=["times"]).text("at 12:01:02") == "at 12:01:02"
    assert Sanitizer(off=["all"]).text("\x1b[31mred\x1b[0m") == "\x1b[31mred\x1b[0m"
    with pytest.raises(InputError, match="PATTERN=>REPLACEMENT"):
        Sanitizer(["no arrow"])
    with pytest.raises(InputError, match="bad regular expression"):
        Sanitizer(["(=>x"])
    with pytest.raises(InputError, match="unknown sanitizer 'colour'"):
        Sanitizer(off=["colour"])


def test_an_nbval_sanitizer_file_and_ignored_outputs_migrate_unchanged(tmp_path: Path) -> None:
    # nbval users keep their sanitizer file (--nbval-sanitize-with) and their NBVAL_IGNORE_OUTPUT cells.
    a = executed(tmp_path / "a.ipynb", printed="took 12 ms\n")
    b = executed(tmp_path / "b.ipynb", printed="took 15 ms\n")
    assert cli("diff", str(a), str(b)).returncode == 1
    rules = tmp_path / "sanitize.cfg"
    # As nbval writes them: regex/replace line pairs, several in a section (or none at all).
    rules.write_text("[regex1]\nregex: took \\d+\nreplace: took N\nregex: N ms\nreplace: N units\n")
    done = cli("diff", str(a), str(b), "--sanitize-with", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    ignored = "# NBVAL_IGNORE_OUTPUT\nprint(total)"
    a = executed(tmp_path / "c.ipynb", printed="took 12 ms\n", source=ignored)
    b = executed(tmp_path / "d.ipynb", printed="took 15 ms\n", source=ignored)
    assert cli("diff", str(a), str(b)).returncode == 0
    rules.write_text("regex: (unclosed\nreplace: x\n")
    bad = cli("diff", str(a), str(b), "--sanitize-with", str(rules))
    assert bad.returncode == 2 and f"sanitizer file {rules}: rule 1 ('(unclosed'): bad regular expression" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_doubles_differing_only_in_their_last_bits_are_the_same() -> None:
    # A sum computed in parallel changes its last bits from run to run; a real change counts.
    from nbflow.testing.snapshot import Snapshot

    def snap(revenue: float) -> Snapshot:
        return Snapshot("x", "notebook", {"result": {"variables": {"revenue": revenue, "rows": 3}}})

    assert compare(snap(0.1 + 0.2), snap(0.3), Options()) == []
    (changed,) = compare(snap(0.3), snap(0.3001), Options())
    assert changed.layer == "result" and "revenue" in changed.where and changed.b == 0.3001
