"""Capturing a notebook's user-defined top-level variables at the end of a run."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Mapping
from typing import Any

REPR_LIMIT = 200
VALUE_LIMIT_BYTES = 64 * 1024
# IPython's own names. The runtime's names (dbutils, display...) are left out by identity
# instead, so a user variable that happens to reuse such a name is still captured.
RESERVED = {"In", "Out", "exit", "quit", "get_ipython"}


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the other variables
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


def _json_value(value: Any) -> tuple[bool, Any]:
    if isinstance(value, (str, int, float, bool, type(None), list, dict, tuple)):
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return False, None
        if len(encoded) <= VALUE_LIMIT_BYTES:
            return True, json.loads(encoded)
    return False, None


def capture_variables(
    namespace: Mapping[str, Any],
    hidden: Mapping[str, Any],
    runtime_objects: set[int],
    redact: Callable[[Any], Any],
) -> dict[str, dict[str, Any]]:
    """Name → ``{type, value, repr}`` for the user's own top-level variables.

    Left out: ``_``-prefixed names, IPython's and the runtime's names, modules, functions,
    classes, and objects that are part of the runtime (``dbutils`` and friends) even under a
    user's name.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in RESERVED:
            continue
        if name in hidden and hidden[name] is value:
            continue
        if id(value) in runtime_objects:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                              types.MethodType, type)):
            continue
        kind = type(value)
        entry: dict[str, Any] = {
            "type": kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}",
            "repr": redact(_short_repr(value)),
        }
        has_json, json_value = _json_value(value)
        if has_json:
            entry["value"] = redact(json_value)
        out[name] = entry
    return out
