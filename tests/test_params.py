"""Parameter parsing, typing, files and precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbflow import params
from nbflow.errors import ParameterError

from .conftest import NOTEBOOKS, cli


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("-2", -2), ("1.5", 1.5), ("true", True), ("False", False), ("None", None), ("abc", "abc"),
     ("", "")],
)
def test_cli_values_are_typed_like_papermill(text: str, value: object) -> None:
    assert params.infer_type(text) == value


def test_cli_params_keep_the_raw_text_for_widgets() -> None:
    parsed = params.parse_cli_params(["n=007", "flag=true", "expr=a=b"])
    assert parsed["n"].value == 7 and parsed["n"].widget_value == "007"
    assert parsed["flag"].value is True and parsed["flag"].widget_value == "true"
    assert parsed["expr"].value == "a=b"
    assert {p.source for p in parsed.values()} == {"cli"}


@pytest.mark.parametrize("bad", ["novalue", "=1", "9x=1", "a b=1"])
def test_bad_cli_syntax_names_the_item(bad: str) -> None:
    with pytest.raises(ParameterError, match="-p"):
        params.parse_cli_params([bad])


@pytest.mark.parametrize(
    ("value", "text"), [("s", "s"), (True, "true"), (3, "3"), (None, ""), ([1, 2], "[1, 2]"), ({"a": 1}, '{"a": 1}')]
)
def test_widget_string(value: object, text: str) -> None:
    assert params.widget_string(value) == text


def test_params_file_and_precedence(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("a: 1\nb: two\n")
    merged = params.merge(
        params.from_mapping({"a": 0, "c": 3}, "api"), params.load_params_file(path), params.parse_cli_params(["b=cli"])
    )
    assert merged["a"] == params.Param(1, f"file:{path}")
    assert merged["b"].value == "cli" and merged["b"].source == "cli"
    assert merged["c"] == params.Param(3, "api")


def test_params_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="not found"):
        params.load_params_file(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="mapping"):
        params.load_params_file(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1\n")
    with pytest.raises(ParameterError, match=r"broken\.yaml"):
        params.load_params_file(broken)


@pytest.mark.kernel
def test_dates_in_a_parameters_file_become_iso_strings(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("x: 2026-01-31\n")
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-f", str(params), "--json")
    assert proc.returncode == 1  # child.py does int(x): the date arrived as its ISO string
    error = json.loads(proc.stdout)["tasks"][0]["error"]
    assert "invalid literal for int() with base 10: '2026-01-31'" in error["evalue"]


def test_non_string_parameter_names_are_refused(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("1: one\n")
    proc = cli("run", str(NOTEBOOKS / "child.py"), "-f", str(params))
    assert proc.returncode == 2 and "must be a string" in proc.stderr
