"""Differences written out: for a terminal, a pull request comment (Markdown), a program (JSON)
or a browser (a standalone HTML page)."""

from __future__ import annotations

import difflib
import html
import json
from collections.abc import Sequence
from typing import Any

from .differences import Difference, counts

FORMATS = ("term", "markdown", "json", "html")
_CLIP = 400


def render(fmt: str, a: str, b: str, differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    """``differences`` between ``a`` and ``b`` (origins), ``failing`` those that change the exit code."""
    return {"term": _term, "markdown": _markdown, "json": _json, "html": _html}[fmt](a, b, differences, failing)


def summary_line(differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    if not differences:
        return "no differences"
    by_layer = ", ".join(f"{layer} {n}" for layer, n in counts(differences).items())
    tail = "" if len(failing) == len(differences) else f"; {len(failing)} count toward the exit code"
    return f"{len(differences)} difference{'s' if len(differences) != 1 else ''} ({by_layer}){tail}"


def _term(a: str, b: str, differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    lines = [f"A: {a}", f"B: {b}"]
    for d in differences:
        lines.append("")
        lines.append(d.where + (f"  ({d.note})" if d.note else ""))
        lines += ["  " + line for line in _side_by_side(d)]
    lines += ["", summary_line(differences, failing)]
    return "\n".join(lines)


def _side_by_side(d: Difference) -> list[str]:
    if isinstance(d.a, str) and isinstance(d.b, str) and ("\n" in d.a or "\n" in d.b):
        return [line.rstrip("\n") for line in difflib.unified_diff(
            d.a.splitlines(keepends=True), d.b.splitlines(keepends=True), "A", "B", lineterm="")][2:]
    return [f"- {_show(d.a)}", f"+ {_show(d.b)}"]


def _show(value: Any) -> str:
    if isinstance(value, str):  # quoted only when its spaces or lines would not show
        text = value if value == value.strip() and "\n" not in value else json.dumps(value)
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


def _markdown(a: str, b: str, differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    lines = [f"### nbflow diff: {summary_line(differences, failing)}", "", f"A: `{a}`  ", f"B: `{b}`"]
    if differences:
        lines += ["", "| where | A | B |", "|---|---|---|"]
        for d in differences:
            where = d.where + (f" ({d.note})" if d.note else "")
            lines.append(f"| {_cell(where)} | {_code(d.a)} | {_code(d.b)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    if value is None:
        return ""
    text = _show(value).replace("`", "'")
    return f"`{_cell(text)}`"


def _json(a: str, b: str, differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    return json.dumps({"a": a, "b": b, "same": not differences, "failing": len(failing),
                       "counts": counts(differences), "differences": [d.to_json() for d in differences]},
                      indent=2, default=str) + "\n"


def _html(a: str, b: str, differences: Sequence[Difference], failing: Sequence[Difference]) -> str:
    rows = "\n".join(
        f"<tr><td>{html.escape(d.where)}{f' <em>({html.escape(d.note)})</em>' if d.note else ''}</td>"
        f"<td><pre>{html.escape(_show(d.a))}</pre></td><td><pre>{html.escape(_show(d.b))}</pre></td></tr>"
        for d in differences)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>nbflow diff</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px;vertical-align:top}pre{margin:0;white-space:pre-wrap}</style></head><body>"
            f"<h3>nbflow diff: {html.escape(summary_line(differences, failing))}</h3>"
            f"<p>A: <code>{html.escape(a)}</code><br>B: <code>{html.escape(b)}</code></p>"
            f"<table><tr><th>where</th><th>A</th><th>B</th></tr>{rows}</table></body></html>\n")
