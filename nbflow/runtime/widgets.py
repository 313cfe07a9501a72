"""``dbutils.widgets``: notebook inputs whose values are always strings.

A value comes from the caller's arguments when one was bound to that name, otherwise from the
widget's default. As in a Databricks job, ``get`` also answers for a bound argument that no
widget declares. Between the two come, in a notebook run by hand, the value the user set in the
widget panel (:mod:`nbflow.runtime.widget_panel`), and, in a run, the value saved with the
notebook (``metadata.nbflow_widgets``, saved by ``nbflow lab``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from ..errors import InputWidgetNotDefined
from .help import show


@dataclass
class Widget:
    kind: str
    name: str
    default: str
    choices: tuple[str, ...]
    label: str | None


class Panel(Protocol):
    """What draws the widgets for a user (an interactive notebook with a front end)."""

    def declare(self, widget: Widget) -> None: ...
    def value(self, name: str) -> str | None: ...
    def remove(self, name: str) -> None: ...


def _require_str(value: object, what: str) -> str:
    # Databricks' Python dbutils forwards to Scala methods typed String: other types fail there.
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    return value


class WidgetsUtils:
    """The widget registry of one notebook (shared by notebooks it includes with ``%run``)."""

    _INTERNAL = ("bound", "snapshot", "unused_arguments", "live")  # the runtime's, not listed by help()

    def __init__(self, arguments: Mapping[str, str], saved: Mapping[str, str] | None = None) -> None:
        self._layers: list[dict[str, str]] = [dict(arguments)]
        self._saved = dict(saved or {})  # values saved with the notebook: below arguments, above defaults
        self.panel: Panel | None = None
        self._widgets: dict[str, Widget] = {}
        # Every widget the run declared, removed ones included: the run's parameters record.
        self._declared: dict[str, Widget] = {}
        self.used: set[str] = set()

    # -- creation -------------------------------------------------------------------------
    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        """Create a text widget."""
        self._create("text", name, defaultValue, (), label)

    def dropdown(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        """Create a dropdown widget; the default must be one of the choices."""
        self._create("dropdown", name, defaultValue, choices, label)

    def combobox(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        """Create a combobox widget (one of the choices, or free text)."""
        self._create("combobox", name, defaultValue, choices, label)

    def multiselect(
        self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None
    ) -> None:
        """Create a multiselect widget; its value is the selected choices joined by commas."""
        self._create("multiselect", name, defaultValue, choices, label)

    def _create(self, kind: str, name: str, default: str, choices: Sequence[str], label: str | None) -> None:
        _require_str(name, "widget name")
        _require_str(default, f"default value of widget {name!r}")
        if isinstance(choices, str) or not all(isinstance(c, str) for c in choices):
            raise TypeError(f"choices of widget {name!r} must be a list of strings")
        if kind in ("dropdown", "multiselect"):
            picked = default.split(",") if kind == "multiselect" else [default]
            missing = [p for p in picked if p not in choices]
            if missing:
                raise ValueError(
                    f"default value {default!r} of {kind} widget {name!r} must be one of the choices {list(choices)}"
                )
        widget = self._widgets[name] = self._declared[name] = Widget(kind, name, default, tuple(choices), label)
        self.used.add(name)
        if self.panel is not None:
            self.panel.declare(widget)

    # -- reading --------------------------------------------------------------------------
    def _argument(self, name: str) -> str | None:
        for layer in reversed(self._layers):
            if name in layer:
                return layer[name]
        return None

    def get(self, name: str) -> str:
        """The current value of a widget, or of an argument bound to that name."""
        _require_str(name, "widget name")
        self.used.add(name)
        value = self._argument(name)
        if value is not None:
            return value
        if name in self._widgets:
            set_by_user = self.panel.value(name) if self.panel is not None else None
            if set_by_user is not None:
                return set_by_user
            return self._saved.get(name, self._widgets[name].default)
        raise InputWidgetNotDefined(name)

    def getArgument(self, name: str, optional: str | None = None) -> str | None:
        """Deprecated Databricks alias of ``get``; returns ``optional`` when the name is unknown."""
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            if optional is None:
                raise
            return optional

    def getAll(self) -> dict[str, str]:
        """Every widget and bound argument with its current value."""
        names = list(self._widgets)
        for layer in self._layers:
            names += [n for n in layer if n not in names]
        return {name: self.get(name) for name in names}

    def remove(self, name: str) -> None:
        """Remove a widget; raises InputWidgetNotDefined if there is none of that name."""
        if name not in self._widgets:
            raise InputWidgetNotDefined(name)
        del self._widgets[name]
        if self.panel is not None:
            self.panel.remove(name)

    def removeAll(self) -> None:
        """Remove every widget (bound arguments stay bound, as in a job)."""
        for name in list(self._widgets):
            self.remove(name)

    # -- for the runtime -------------------------------------------------------------------
    @contextmanager
    def bound(self, arguments: Mapping[str, str]) -> Iterator[None]:
        """Bind extra arguments for the duration of a ``%run`` include."""
        self._layers.append(dict(arguments))
        try:
            yield
        finally:
            self._layers.pop()

    def snapshot(self) -> dict[str, dict[str, str | None]]:
        """Every widget declared, with its value and whether the value came from an argument."""
        out: dict[str, dict[str, str | None]] = {}
        for name, widget in self._declared.items():
            bound = self._argument(name)
            saved = self._saved.get(name)
            out[name] = {
                "kind": widget.kind,
                "value": bound if bound is not None else saved if saved is not None else widget.default,
                "default": widget.default,
                "source": "argument" if bound is not None else "saved with the notebook" if saved is not None
                else "widget default",
            }
        return out

    def live(self) -> list[Widget]:
        """The widgets declared and not removed (``restartPython`` declares them again)."""
        return list(self._widgets.values())

    def unused_arguments(self) -> list[str]:
        return sorted(name for name in self._layers[0] if name not in self.used)

    def help(self, method: str = "") -> None:
        show("dbutils.widgets", self, method)
