"""SQL cells as Databricks runs them: statements, widgets and variables around ``spark.sql``.

A ``%sql`` cell (every cell of a SQL notebook is one) runs its statements one after another;
the last result is displayed and kept as ``_sqldf``. Before a statement reaches the engine:

- ``${name}`` is replaced by the widget's (or the bound argument's) value, else by a variable
  set with ``SET name = value`` in SQL, else by the Spark configuration value for a dotted name
  (Spark's legacy variable substitution: plain text, also inside strings; ``\\${x}`` is kept);
- ``getArgument("name"[, "default"])`` is replaced by the value as a quoted SQL string;
- ``:name`` parameter markers are bound through ``spark.sql(statement, args=...)`` with the
  widgets' values (strings): the value never becomes SQL text.

``CREATE WIDGET ...``, ``REMOVE WIDGET name`` and ``SET name = value`` (a name without a
namespace, or ``hivevar:``/``hiveconf:``) are answered here: they act on ``dbutils.widgets`` and
on this notebook's SQL variables, which no engine keeps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputWidgetNotDefined, NotebookRuntimeError, UnboundSqlParameter
from .sql_text import sql_string

if TYPE_CHECKING:
    from .session import Session
    from .widgets import WidgetsUtils


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # "code", "string", "quoted" (a `backquoted` name) or "comment"


def scan(text: str) -> Iterator[Span]:
    """Split SQL text into code, string literals, backquoted names and comments, as Spark reads
    them: backslash escapes in strings, ``--`` line comments, nested ``/* */`` comments."""
    i, start, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`" or text.startswith(("--", "/*"), i):
            if i > start:
                yield Span(start, i, "code")
            if ch in "'\"`":
                end = _quote_end(text, i)
                yield Span(i, end, "quoted" if ch == "`" else "string")
            elif ch == "-":
                newline = text.find("\n", i)
                end = n if newline < 0 else newline
                yield Span(i, end, "comment")
            else:
                end = _block_comment_end(text, i)
                yield Span(i, end, "comment")
            i = start = end
            continue
        i += 1
    if start < n:
        yield Span(start, n, "code")


def _quote_end(text: str, i: int) -> int:
    quote, j = text[i], i + 1
    while j < len(text):
        if text[j] == "\\" and quote != "`":
            j += 2
            continue
        if text[j] == quote:
            if quote == "`" and text.startswith("``", j):  # `a``b`: a doubled backquote inside a name
                j += 2
                continue
            return j + 1
        j += 1
    return len(text)  # unterminated: the engine reports it


def _block_comment_end(text: str, i: int) -> int:
    depth, j = 0, i
    while j < len(text):
        if text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(text)


def split_sql(text: str) -> list[str]:
    """The statements of a cell: split on ``;`` outside strings, names and comments. Comments
    are dropped (each becomes a space, so tokens never merge); empty statements too."""
    statements: list[str] = []
    current: list[str] = []
    for span in scan(text):
        piece = text[span.start:span.end]
        if span.kind == "comment":
            current.append("\n" if piece.startswith("--") else " ")
        elif span.kind != "code":
            current.append(piece)
        else:
            parts = piece.split(";")
            current.append(parts[0])
            for part in parts[1:]:
                statements.append("".join(current))
                current = [part]
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def unquote(literal: str) -> str:
    """The text of a SQL string literal (or a bare word), backslash escapes undone."""
    if len(literal) >= 2 and literal[0] == literal[-1] and literal[0] in "'\"":
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(m[1], m[1]),
                      literal[1:-1], flags=re.DOTALL)
    return literal


def _in_code(spans: list[Span], position: int) -> bool:
    return any(s.start <= position < s.end and s.kind == "code" for s in spans)


# -- ${name}: legacy text substitution -----------------------------------------------------------
_VARIABLE = re.compile(r"(?<!\\)\$\{(?P<name>[^{}\s]+)\}")
_NAMESPACES = ("hivevar:", "hiveconf:", "sparkconf:", "spark:")


def substitute(statement: str, lookup: Callable[[str], str | None]) -> str:
    """Replace each ``${name}`` that ``lookup`` answers; others stay as written (as in Spark)."""

    def replace(m: re.Match[str]) -> str:
        value = lookup(m["name"])
        return m[0] if value is None else value

    return _VARIABLE.sub(replace, statement)


# -- getArgument("name") ------------------------------------------------------------------------
_LITERAL = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_GET_ARGUMENT = re.compile(
    rf"\bgetArgument\s*\(\s*(?P<name>{_LITERAL})\s*(?:,\s*(?P<default>{_LITERAL})\s*)?\)", re.IGNORECASE | re.DOTALL)


def replace_get_argument(statement: str, widgets: WidgetsUtils) -> str:
    """``getArgument("name")`` (a function only Databricks' SQL has) as the value's string literal."""
    spans = list(scan(statement))

    def replace(m: re.Match[str]) -> str:
        if not _in_code(spans, m.start()):
            return m[0]
        name = unquote(m["name"])
        default = None if m["default"] is None else unquote(m["default"])
        value = widgets.getArgument(name, default)
        return sql_string(value if value is not None else "")

    return _GET_ARGUMENT.sub(replace, statement)


# -- :name parameter markers --------------------------------------------------------------------
_MARKER = re.compile(r":(?P<name>[A-Za-z_]\w*)")


def parameter_markers(statement: str) -> list[str]:
    """The ``:name`` markers of a statement, outside strings and comments. ``a::int`` (a cast)
    and ``raw:field`` (a JSON path) are not markers: a marker stands where a value starts."""
    names: list[str] = []
    for span in scan(statement):
        if span.kind != "code":
            continue
        for m in _MARKER.finditer(statement, span.start, span.end):
            before = statement[m.start() - 1] if m.start() > 0 else " "
            if before.isalnum() or before in "_:)]}`'\"$":
                continue
            if m["name"] not in names:
                names.append(m["name"])
    return names


# -- statements answered here ---------------------------------------------------------------------
_NAME = r"`(?:[^`]|``)+`|[\w.\-]+"
_CREATE_WIDGET = re.compile(
    rf"CREATE\s+WIDGET\s+(?P<kind>TEXT|DROPDOWN|COMBOBOX|MULTISELECT)\s+(?P<name>{_NAME})\s+"
    rf"DEFAULT\s+(?P<default>{_LITERAL}|\S+)(?:\s+CHOICES\s+(?P<choices>.+))?", re.IGNORECASE | re.DOTALL)
_REMOVE_WIDGET = re.compile(rf"REMOVE\s+WIDGET\s+(?P<name>{_NAME})", re.IGNORECASE)
_SET_VARIABLE = re.compile(
    r"SET\s+(?P<ns>hivevar:|hiveconf:)?(?P<key>(?!spark\.)(?!VAR(?:IABLE)?\s)[A-Za-z_][\w.]*)\s*"
    r"(?:=\s*(?P<value>.*))?", re.IGNORECASE | re.DOTALL)
_SESSION_VARIABLES = re.compile(r"(?:DECLARE|SET\s+VAR(?:IABLE)?|EXECUTE\s+IMMEDIATE)\b", re.IGNORECASE)
_CHOICE_LIST = re.compile(rf"\(\s*(?:{_LITERAL}|[^,()'\"]+)(?:\s*,\s*(?:{_LITERAL}|[^,()'\"]+))*\s*\)", re.DOTALL)
_CHOICE = re.compile(rf"{_LITERAL}|[^,()'\"\s]+")


def _name(text: str) -> str:
    return text[1:-1].replace("``", "`") if text.startswith("`") else text


class SqlCell:
    """Runs the statements of ``%sql`` cells for one kernel (its SQL variables live here)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.variables: dict[str, str] = {}  # SET name = value, for ${name}

    @property
    def widgets(self) -> WidgetsUtils:
        return self.session.dbutils.widgets

    def run(self, cell: str) -> Any:
        """Run every statement of the cell; the last result (a DataFrame), or None."""
        result = None
        for statement in split_sql(cell):
            answer = self.statement(statement)
            if answer is not None:
                result = answer
        return result

    def statement(self, statement: str) -> Any:
        statement = substitute(statement, self.lookup)
        widget = self._widget_statement(statement)
        if widget is not None:
            return None
        set_match = _SET_VARIABLE.fullmatch(statement)
        if set_match is not None:
            return self._set(set_match)
        statement = replace_get_argument(statement, self.widgets)
        try:
            return self._engine(statement)
        except Exception as exc:
            kind = _SESSION_VARIABLES.match(statement)
            if kind is None or "PARSE_SYNTAX_ERROR" not in str(exc):
                raise
            word = " ".join(kind[0].split()).upper()
            raise NotebookRuntimeError(
                f"{word}: the engine has no SQL session variables (Sail does not parse DECLARE VARIABLE, "
                "SET VAR or EXECUTE IMMEDIATE); use SET name = value with ${name}, or a widget with :name"
            ) from None

    def _engine(self, statement: str) -> Any:
        spark = self.session.lakehouse.spark()
        markers = parameter_markers(statement)
        if not markers:
            return spark.sql(statement)
        args = {}
        for name in markers:
            try:
                args[name] = self.widgets.get(name)
            except InputWidgetNotDefined:
                raise UnboundSqlParameter(
                    f"[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {name}. No widget or parameter "
                    f"named {name!r}: declare it (CREATE WIDGET TEXT {name} DEFAULT \"...\") or pass it (-p {name}=...)"
                ) from None
        return spark.sql(statement, args=args)

    def lookup(self, name: str) -> str | None:
        """What ``${name}`` stands for: a widget or argument, a SET variable, a configuration value."""
        if name.startswith("env:"):
            return os.environ.get(name[4:])
        bare = next((name[len(ns):] for ns in _NAMESPACES if name.startswith(ns)), name)
        if bare == name:
            try:
                return self.widgets.get(name)
            except InputWidgetNotDefined:
                pass
        if bare in self.variables:
            return self.variables[bare]
        if "." in bare:
            try:
                value = self.session.lakehouse.spark().conf.get(bare, None)
            except Exception:  # an engine that knows no such key: leave ${name} as written
                return None
            return None if value is None else str(value)
        return None

    def _widget_statement(self, statement: str) -> bool | None:
        m = _CREATE_WIDGET.fullmatch(statement)
        if m is not None:
            kind, name, default = m["kind"].lower(), _name(m["name"]), unquote(m["default"])
            if kind == "text":
                self.widgets.text(name, default)
            else:
                choices = self._choices(m["choices"], name)
                getattr(self.widgets, kind)(name, default, choices)
            return True
        m = _REMOVE_WIDGET.fullmatch(statement)
        if m is not None:
            self.widgets.remove(_name(m["name"]))
            return True
        return None

    def _choices(self, text: str | None, name: str) -> list[str]:
        if text is None:
            raise NotebookRuntimeError(f"CREATE WIDGET {name}: a dropdown, combobox or multiselect widget needs "
                                       "CHOICES SELECT ... (or CHOICES ('a', 'b'))")
        text = text.strip()
        if _CHOICE_LIST.fullmatch(text):
            return [unquote(c) for c in _CHOICE.findall(text[1:-1])]
        rows = self.session.lakehouse.spark().sql(text).collect()
        return [str(row[0]) for row in rows if row[0] is not None]

    def _set(self, m: re.Match[str]) -> Any:
        """``SET name = value``: Spark keeps the text after ``=`` as written, quotes included."""
        key = m["key"]
        if m["value"] is not None:
            self.variables[key] = m["value"].strip()
        spark = self.session.lakehouse.spark()
        value = self.variables.get(key, "<undefined>")
        return spark.createDataFrame([(key, value)], "key string, value string")
