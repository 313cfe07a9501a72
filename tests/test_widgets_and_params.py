"""Widgets and parameters inside real kernels."""

from __future__ import annotations

import json

import pytest

from .conftest import exit_json, run

pytestmark = pytest.mark.kernel


def test_every_widget_kind_and_accessor() -> None:
    values = exit_json(run("widgets.py", {"city": "Lyon"}))
    assert values["city"] == "Lyon"
    assert values["size"] == "M" and values["color"] == "red" and values["days"] == "mon"
    assert values["all"] == {"city": "Lyon", "size": "M", "color": "red", "days": "mon"}
    assert values["getArgument"] == "Lyon"
    assert values["getArgument_default"] == "fallback"
    assert "InputWidgetNotDefined: No input widget named color is defined" in values["removed"]
    assert values["after_remove_all"] == ["city"]  # the bound argument stays, as in a job


def test_multiselect_argument_is_a_comma_joined_string() -> None:
    assert exit_json(run("widgets.py", {"days": "mon,wed"}))["days"] == "mon,wed"


def test_undefined_widget_fails_the_cell_with_databricks_text() -> None:
    result = run("widget_undefined.py")
    assert result.status == "FAILED"
    assert result.error.cell_index == 1
    assert result.error.ename == "InputWidgetNotDefined"
    assert "InputWidgetNotDefined: No input widget named missing is defined" in result.error.evalue


def test_dropdown_default_outside_choices_fails() -> None:
    result = run("widget_bad_default.py")
    assert result.status == "FAILED" and result.error.ename == "ValueError"
    assert "must be one of the choices" in result.error.evalue


def test_parameters_reach_both_the_parameters_cell_and_widgets() -> None:
    result = run("params.ipynb", {"n": 5, "enabled": True, "label": "x"})
    values = exit_json(result)
    assert values == {"n": 5, "n_type": "int", "label": "x", "rate": 0.1, "enabled": True,
                      "widget_n": "5", "widget_enabled": "true"}
    assert result.parameters["n"] == {"value": 5, "source": "api"}
    assert result.variables["n"]["value"] == 5


def test_parameter_sources_include_widget_defaults() -> None:
    result = run("widgets.py", {"city": "Lyon"})
    assert result.parameters["city"] == {"value": "Lyon", "source": "api"}
    assert result.parameters["size"] == {"value": "M", "source": "widget default"}


def test_unknown_parameter_warns_and_does_not_fail() -> None:
    result = run("child.py", {"x": "2", "typo": "1"})
    assert result.status == "SUCCESS" and result.exit_value == "4"
    assert result.warnings == ["parameter 'typo' was passed but the notebook has no widget or parameter of that name"]


def test_no_parameters_cell_means_no_injected_variables() -> None:
    result = run("child.py", {"x": "3"})
    assert "x" in result.variables and result.variables["x"]["value"] == 3  # set by the notebook itself
    assert "caller" not in result.variables


def test_keyword_parameters_are_widgets_only() -> None:
    result = run("params.ipynb", {"n": 2, "enabled": "no", "class": "x"})
    assert result.ok and json.loads(result.exit_value)["n"] == 2
