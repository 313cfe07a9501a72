"""Differences between two snapshots (:mod:`nbflow.testing.snapshot`), layer by layer.

Both sides are sanitized first (:mod:`nbflow.testing.sanitize`). Numbers, and numbers inside
text, may differ within a tolerance (``rtol``, ``atol``, as ``math.isclose``). Mappings are matched
by key (cells by number and title, a plan's tasks by task key), lists by position, and the rows
of a displayed table as a multiset unless their order is asked to count. Timings differ only when one side is slower
than ``slowdown`` times the other plus a floor: durations always vary a little.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .sanitize import Sanitizer
from .snapshot import LAYERS, Snapshot

# What a comparison looks at when not told otherwise, and what makes it fail.
DEFAULT_LAYERS = LAYERS
DEFAULT_FAIL_ON = tuple(layer for layer in LAYERS if layer != "timings")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_MISSING = object()


FLOAT_NOISE = 1e-9  # relative: doubles closer than this are equal in every comparison

@dataclass(frozen=True)
class Difference:
    layer: str
    where: str
    a: Any
    b: Any
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data = {"layer": self.layer, "where": self.where, "a": _plain(self.a), "b": _plain(self.b)}
        return {**data, "note": self.note} if self.note else data


@dataclass
class Options:
    layers: tuple[str, ...] = DEFAULT_LAYERS
    sanitizer: Sanitizer = field(default_factory=Sanitizer)
    rtol: float = 0.0
    atol: float = 0.0
    row_order: bool = False
    slowdown: float = 2.0
    slowdown_floor_s: float = 1.0


def compare(a: Snapshot, b: Snapshot, options: Options | None = None) -> list[Difference]:
    """Every difference between ``a`` and ``b`` in the layers asked for (both sides sanitized)."""
    options = options or Options()
    found: list[Difference] = []
    for layer in options.layers:
        left, right = a.layers.get(layer, _MISSING), b.layers.get(layer, _MISSING)
        if left is _MISSING and right is _MISSING:
            continue
        if left is _MISSING or right is _MISSING:
            side = "B" if left is _MISSING else "A"
            found.append(Difference(layer, layer, _plain(left), _plain(right), f"only in {side}"))
            continue
        walker = _Walker(layer, options)
        if layer == "timings":
            walker.timings(left, right, [])
        else:
            walker.walk(options.sanitizer.data(left, layer), options.sanitizer.data(right, layer), [])
        found += walker.found
    return found


class _Walker:
    def __init__(self, layer: str, options: Options) -> None:
        self.layer = layer
        self.options = options
        self.found: list[Difference] = []

    def add(self, path: list[str], a: Any, b: Any, note: str = "") -> None:
        where = " › ".join([self.layer, *path])
        self.found.append(Difference(self.layer, where, _plain(a), _plain(b), note))

    def walk(self, a: Any, b: Any, path: list[str]) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if _is_table(a) and _is_table(b):
                self.table(a, b, path)
                return
            for key in [*a, *(k for k in b if k not in a)]:
                if key not in b:
                    self.add([*path, str(key)], a[key], None, "only in A")
                elif key not in a:
                    self.add([*path, str(key)], None, b[key], "only in B")
                else:
                    self.walk(a[key], b[key], [*path, str(key)])
            return
        if isinstance(a, list) and isinstance(b, list):
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                self.walk(x, y, [*path, f"[{i + 1}]"])
            for i in range(len(b), len(a)):
                self.add([*path, f"[{i + 1}]"], a[i], None, "only in A")
            for i in range(len(a), len(b)):
                self.add([*path, f"[{i + 1}]"], None, b[i], "only in B")
            return
        if not self.same(a, b):
            self.add(path, a, b)

    def same(self, a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        if isinstance(a, int | float) and isinstance(b, int | float):
            return self.close(a, b)
        if isinstance(a, str) and isinstance(b, str):
            if a == b:
                return True
            if not (self.options.rtol or self.options.atol):
                return False
            return _NUMBER.split(a) == _NUMBER.split(b) and all(
                self.close(float(x), float(y)) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True))
        return bool(a == b)

    def close(self, a: float, b: float) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            if math.isnan(a) and math.isnan(b):
                return True
            # Two doubles are the same past FLOAT_NOISE: a sum an engine computes in parallel
            # changes its last bits from run to run.
            return math.isclose(a, b, rel_tol=max(self.options.rtol, FLOAT_NOISE), abs_tol=self.options.atol)
        return math.isclose(a, b, rel_tol=self.options.rtol, abs_tol=self.options.atol)

    def table(self, a: dict[str, Any], b: dict[str, Any], path: list[str]) -> None:
        """A displayed DataFrame: its schema, then its rows (a multiset unless order counts)."""
        if a.get("schema") != b.get("schema"):
            self.add([*path, "schema"], a.get("schema"), b.get("schema"))
            return
        rows_a, rows_b = list(a.get("rows") or []), list(b.get("rows") or [])
        if not self.options.row_order:
            rows_a, rows_b = sorted(rows_a, key=_sort_key), sorted(rows_b, key=_sort_key)
        self.walk(rows_a, rows_b, [*path, "rows"])
        for key in ("shown", "more"):
            if a.get(key) != b.get(key):
                self.add([*path, key], a.get(key), b.get(key))

    def timings(self, a: Any, b: Any, path: list[str]) -> None:
        """Durations: a difference only past ``slowdown`` times the faster side plus the floor."""
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [k for k in a if k in b]:
                self.timings(a[key], b[key], [*path, str(key)])
        elif isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            low, high = sorted((float(a), float(b)))
            if high > low * self.options.slowdown + self.options.slowdown_floor_s:
                ratio = f": {b / a:.2f}x" if a and b else ""
                self.add(path, a, b, f"{'slower' if b > a else 'faster'} in B{ratio}")


def _is_table(value: dict[str, Any]) -> bool:
    return "schema" in value and isinstance(value.get("rows"), list)


def _sort_key(row: Any) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    return None if value is _MISSING else value


def counts(differences: Iterable[Difference]) -> dict[str, int]:
    found: dict[str, int] = {}
    for d in differences:
        found[d.layer] = found.get(d.layer, 0) + 1
    return found
