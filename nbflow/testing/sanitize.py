"""Sanitizers: what differs between two runs of the same notebook without meaning anything.

Both sides of a comparison (``nbflow diff``, the golden store) go through the same sanitizers
before they are compared, and goldens are stored sanitized, so that they review well in a pull
request. Each preset has a name (``--sanitize-off NAME`` leaves one out); a user rule is a
regular expression and its replacement (``PATTERN=>REPLACEMENT``).

Dates and times are data in a table or an exit value: the ``datetimes`` and ``times`` presets
apply to printed text only (outputs, sources, plans), never to the ``result`` and ``tables``
layers.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

RULE_SEPARATOR = "=>"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colours, in tracebacks and printed text
VALUE_LAYERS = ("result", "tables")  # data: the text-only presets leave them alone
TEXT_ONLY = frozenset({"datetimes", "times"})
_NEVER = r"(?!x)x"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    replacement: str

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)


def _presets() -> list[Rule]:
    # Worked out when a sanitizer is made, not at import: the plugin module is imported by every
    # pytest session of the environment, and a home folder may not exist (a container's user).
    try:
        home = str(Path.home())
    except RuntimeError:
        home = ""
    temp = re.escape(tempfile.gettempdir().rstrip("/"))
    rules = [
        ("ansi", ANSI.pattern, ""),
        # nbflow's run ids (processed/<run-id>, interactive sessions): a date, a time, a suffix.
        ("run-ids", r"\b(?:interactive-|pytest-)?20\d{6}-\d{6}(?:-(?:[0-9a-f]{6}|\d+))?\b", "<run-id>"),
        ("uuids", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
        ("datetimes", r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
         "<datetime>"),
        ("times", r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
        ("addresses", r"\b0x[0-9a-fA-F]{6,16}\b", "<address>"),
        ("temp-paths", rf"{temp}/[^\s'\"),\]]+", "<tmp>"),
        ("home", re.escape(home) + r"(?=/|\b)" if home not in ("", "/") else _NEVER, "~"),
        # The ports and process ids Spark, Jupyter and nbflow print ("port 43121", "pid 1234").
        ("ports-and-pids", r"\b(port|pid)( ?[=:]? ?)\d+\b", r"\1\2<n>"),
    ]
    return [Rule(name, re.compile(pattern), replacement) for name, pattern, replacement in rules]


PRESETS = ("ansi", "run-ids", "uuids", "datetimes", "times", "addresses", "temp-paths", "home", "ports-and-pids")


class Sanitizer:
    """The project's folders (as ``<root>``), the presets (minus those left out), then the
    user's rules, applied to every string."""

    def __init__(self, rules: Sequence[str | Rule] = (), off: Iterable[str] = (), roots: Iterable[Path] = ()) -> None:
        off = set(off)
        unknown = off - set(PRESETS) - {"all"}
        if unknown:
            raise InputError(f"unknown sanitizer {sorted(unknown)[0]!r}: the presets are {', '.join(PRESETS)} (or all)")
        self.rules = [] if "all" in off else [r for r in _presets() if r.name not in off]
        # The project's own folders (a pytest-xdist worker's project first: it is inside the
        # project): the same notebooks run from another clone or worker compare equal.
        for root in sorted({str(Path(r).resolve()) for r in roots}, key=len):
            self.rules.insert(0, Rule("root", re.compile(re.escape(root) + r"(?=/|\b)"), "<root>"))
        self.rules += [rule if isinstance(rule, Rule) else user_rule(rule) for rule in rules]

    def text(self, value: str, layer: str = "") -> str:
        for rule in self.rules:
            if layer in VALUE_LAYERS and rule.name in TEXT_ONLY:
                continue
            value = rule.apply(value)
        return value

    def data(self, value: Any, layer: str = "") -> Any:
        """Every string in JSON data sanitized (keys too), the rest as it is."""
        if isinstance(value, str):
            return self.text(value, layer)
        if isinstance(value, dict):
            return {self.text(str(k), layer): self.data(v, layer) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, layer) for v in value]
        return value


def user_rule(text: str) -> Rule:
    """``PATTERN=>REPLACEMENT`` (the replacement may be empty) as a rule."""
    pattern, found, replacement = text.partition(RULE_SEPARATOR)
    if not found or not pattern:
        raise InputError(f"sanitizer rule {text!r}: write it as PATTERN{RULE_SEPARATOR}REPLACEMENT")
    try:
        return Rule(f"user:{pattern}", re.compile(pattern), replacement)
    except re.error as exc:
        raise InputError(f"sanitizer rule {text!r}: bad regular expression ({exc})") from None


# nbval reads its sanitizer file this way (not as INI): each "regex: ..." line followed by a
# "replace: ..." line, anywhere, section headers and all else ignored.
_NBVAL_PAIR = re.compile(r"^regex: (.*)$\n^replace: (.*)$", re.M)


def nbval_rules(path: Path) -> list[Rule]:
    """The rules of an nbval sanitizer file (``--nbval-sanitize-with``), read as nbval reads it:
    every ``regex:`` line with the ``replace:`` line after it, in the file's order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"sanitizer file {path}: {exc.strerror or exc}") from None
    rules = []
    for number, (pattern, replacement) in enumerate(_NBVAL_PAIR.findall(text), start=1):
        try:
            rules.append(Rule(f"file:{path.name}:{number}", re.compile(pattern), replacement))
        except re.error as exc:
            raise InputError(f"sanitizer file {path}: rule {number} ({pattern!r}): bad regular expression ({exc})") \
                from None
    return rules
