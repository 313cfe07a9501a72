"""Parameters: where each value comes from, which one wins, and how it reaches the notebook.

A run's parameters come from, lowest precedence first:

1. the notebook's own defaults (widget defaults, or the cell tagged ``parameters``),
2. ``parameters=`` given to the Python API (source ``api``),
3. a parameters file, ``-f params.yaml`` (source ``file:<path>``),
4. ``-p NAME=VALUE`` on the command line (source ``cli``).

Every value reaches the notebook twice, the two ways users know: as a widget value for
``dbutils.widgets.get`` (always a string, as on Databricks) and, when the notebook has a cell
tagged ``parameters``, as a typed Python variable injected after it (papermill's way).
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ParameterError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Param:
    """One parameter value and where it came from."""

    value: Any
    source: str

    @property
    def widget_value(self) -> str:
        return widget_string(self.value)


def widget_string(value: Any) -> str:
    """The string a widget sees for a typed value: JSON spelling for non-strings.

    ``True`` becomes ``"true"`` and ``[1, 2]`` becomes ``"[1, 2]"``, as job parameters typed in
    JSON reach a Databricks notebook; ``None`` becomes ``""``.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def infer_type(text: str) -> Any:
    """Type of a ``-p`` value as papermill's CLI infers it: int, float, bool, None, else str."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_cli_params(items: Iterable[str]) -> dict[str, Param]:
    """Parse ``NAME=VALUE`` strings from ``-p``; the raw text is kept as the widget value."""
    params: dict[str, Param] = {}
    for item in items:
        _check_text(item)
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"-p {item!r}: expected NAME=VALUE")
        check_name(name, f"-p {item!r}")
        params[name] = CliParam(infer_type(raw), "cli", raw)
    return params


def _check_text(item: str) -> None:
    """A ``-p`` argument must be text: bytes that are not UTF-8 reach Python as lone surrogates
    (``\\udcff`` for 0xff), which no notebook, widget or JSON file can hold."""
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as exc:
        name = item.partition("=")[0]
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        byte = ord(item[exc.start]) - 0xDC00 if 0xDC80 <= ord(item[exc.start]) <= 0xDCFF else None
        what = f"byte 0x{byte:02x}" if byte is not None else f"character {item[exc.start]!r}"
        part = "name" if exc.start < len(name) else f"value of {shown!r}"
        raise ParameterError(f"-p: the {part} is not valid UTF-8 text ({what} at position {exc.start})") from None


@dataclass(frozen=True)
class CliParam(Param):
    """A ``-p`` value: typed for injection, but the widget sees exactly what was typed."""

    raw: str = ""

    @property
    def widget_value(self) -> str:
        return self.raw


def load_params_file(path: str | Path) -> dict[str, Param]:
    """Read a YAML or JSON mapping of parameter names to values."""
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"parameters file not found: {path}")
    # The same guards as a plan's (size, encoding, aliases, depth).
    from .documents import read_document  # lazy: loads yaml; kernels import this module at start-up

    data = read_document(path, "parameters file", ParameterError).data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: parameters file must hold a mapping of NAME: VALUE")
    source = f"file:{path}"
    params: dict[str, Param] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise ParameterError(f"{path}: parameter name {name!r} must be a string (quote it in YAML)")
        check_name(name, f"{path}: parameter {name!r}")
        params[name] = Param(_plain(value), source)
    return params


def _plain(value: Any) -> Any:
    """YAML dates and times become ISO strings: notebooks, widgets and JSON all take those."""
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def injectable(name: str) -> bool:
    """Whether a parameter can become a Python variable in the parameters cell."""
    return name.isidentifier() and not keyword.iskeyword(name)


def from_command_line(parameters_file: str | Path | None, items: Iterable[str]) -> dict[str, Param]:
    """The parameters of a command: a ``-f`` file, then ``-p`` values over it."""
    layers = [load_params_file(parameters_file)] if parameters_file is not None else []
    return merge(*layers, parse_cli_params(items))


def from_mapping(values: Mapping[str, Any] | None, source: str) -> dict[str, Param]:
    params: dict[str, Param] = {}
    for name, value in (values or {}).items():
        if isinstance(value, Param):
            params[name] = value
            continue
        check_name(name, f"parameter {name!r}")
        params[name] = Param(value, source)
    return params


def merge(*layers: Mapping[str, Param]) -> dict[str, Param]:
    """Merge parameter layers; later layers win."""
    merged: dict[str, Param] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(
            f"{where}: bad parameter name (letters, digits, '_', '-' and '.', not starting with a digit)"
        )
