"""``dbutils.widgets`` drawn for a user: ipywidgets in a notebook run by hand in Jupyter.

Databricks shows a notebook's widgets in one bar above it; here, the cell that declares widgets
shows one panel of all of them (the same live controls in every cell that shows it), not one
control per call. ``dbutils.widgets.get`` returns what the user set there (arguments bound by
``%run`` still win). A widget declared again keeps the value the user set, as in the workspace.

What the user sets is also written to the project's ``.nbflow/jupyter/widget_values.json`` (by
notebook); the contents manager of ``nbflow lab`` saves it with an ``.ipynb`` notebook
(``metadata.nbflow_widgets``), and a later ``nbflow run`` of it starts from those values.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

from ..json_files import write_json
from ..project import jupyter_dir
from .widgets import Widget

VALUES_FILE = "widget_values.json"
_lock = threading.Lock()


def values_file(project: str | Path) -> Path:
    return jupyter_dir(project) / VALUES_FILE


def saved_values(project: str | Path, notebook: str) -> dict[str, str]:
    """The values set in the widget panel of ``notebook`` (an absolute path), by widget name."""
    try:
        found = json.loads(values_file(project).read_text(encoding="utf-8")).get(notebook)
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


def _remember(project: str, notebook: str, values: dict[str, str]) -> None:
    target = values_file(project)
    with _lock, contextlib.suppress(OSError):
        try:
            everything = json.loads(target.read_text(encoding="utf-8"))
            if not isinstance(everything, dict):
                everything = {}
        except (OSError, ValueError):
            everything = {}
        everything[notebook] = values
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, everything, indent=1)


def _fits(widget: Widget, value: str) -> bool:
    """Whether a saved value is still one the widget can take (its choices may have changed)."""
    if widget.kind == "dropdown":
        return value in widget.choices
    if widget.kind == "multiselect":
        return all(v in widget.choices for v in value.split(",") if v)
    return True


class WidgetPanel:
    """The widget panel of one interactive notebook."""

    def __init__(self, shell: Any, project: str, notebook: str, saved: dict[str, str] | None = None) -> None:
        import ipywidgets  # lazy: only a notebook with a front end draws widgets

        self._ipywidgets = ipywidgets
        self._shell = shell
        self._project, self._notebook = project, notebook
        self._controls: dict[str, tuple[Widget, Any]] = {}
        self._box = ipywidgets.HBox(layout=ipywidgets.Layout(flex_flow="row wrap"))
        self._shown_in: int | None = None
        self._saved = dict(saved or {})  # what the user set in an earlier session of this notebook

    def declare(self, widget: Widget) -> None:
        known = self._controls.get(widget.name)
        if known is not None and (known[0].kind, known[0].choices) == (widget.kind, widget.choices):
            self._controls[widget.name] = (widget, known[1])  # the user's value stays
            known[1].description = widget.label or widget.name
        else:
            control = self._control(widget)
            control.observe(lambda _change: self._changed(), names="value")
            self._controls[widget.name] = (widget, control)
            self._box.children = tuple(c for _, c in self._controls.values())
        self._show()

    def value(self, name: str) -> str | None:
        known = self._controls.get(name)
        if known is None:
            return None
        value = known[1].value
        if isinstance(value, tuple):  # a multiselect: the choices joined by commas, as on Databricks
            return ",".join(str(v) for v in value)
        return None if value is None else str(value)

    def remove(self, name: str) -> None:
        if self._controls.pop(name, None) is not None:
            self._box.children = tuple(c for _, c in self._controls.values())

    def _control(self, widget: Widget) -> Any:
        w = self._ipywidgets
        saved = self._saved.pop(widget.name, None)
        if saved is not None and _fits(widget, saved):
            widget = Widget(widget.kind, widget.name, saved, widget.choices, widget.label)
        common = {"description": widget.label or widget.name, "style": {"description_width": "initial"}}
        if widget.kind == "dropdown":
            return w.Dropdown(options=list(widget.choices), value=widget.default, **common)
        if widget.kind == "combobox":
            return w.Combobox(options=list(widget.choices), value=widget.default, ensure_option=False,
                              continuous_update=False, **common)
        if widget.kind == "multiselect":
            picked = tuple(v for v in widget.default.split(",") if v in widget.choices)
            return w.SelectMultiple(options=list(widget.choices), value=picked, **common)
        # A text widget takes its value on Enter or leaving the field, as Databricks' does.
        return w.Text(value=widget.default, continuous_update=False, **common)

    def _show(self) -> None:
        # Once per cell: every widget the cell declares goes into the one panel shown there.
        cell = getattr(self._shell, "execution_count", None)
        if cell != self._shown_in:
            self._shown_in = cell
            from IPython.display import display  # lazy: as ipywidgets

            display(self._box)

    def _changed(self) -> None:
        values = {name: self.value(name) or "" for name in self._controls}
        _remember(self._project, self._notebook, values)
