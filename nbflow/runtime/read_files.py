"""``read_files(path, format => 'csv', ...)`` in SQL, for engines that lack it (Sail).

Databricks' ``read_files`` table function reads files of a format into a table, inferring the
schema. nbflow reads them with Spark's DataFrame reader (the same options), registers the result
as a temporary view of the session, and puts the view's name where the call was. Paths are
mapped as Spark's readers map them (``/Volumes``, ``dbfs:/``...). Used where the engine has no
``read_files`` (Sail, Apache Spark: it is Databricks' own).

Options (``key => value``) become reader options; ``format`` picks the reader (default: from
the files' extension, as Databricks does); CSV and JSON infer their schema unless ``schema`` is
given, as ``read_files`` does. Databricks-only options (``schemaHints``,
``schemaEvolutionMode``, ``rescuedDataColumn``) are ignored with one warning line each.

Imported inside kernels.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import PurePosixPath
from typing import Any

from ..errors import ReadFilesError
from .sql_text import Token, tokenize, unquote_string

_IGNORED = ("schemahints", "schemaevolutionmode", "rescueddatacolumn", "inferColumnTypes".lower())
_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text",
            ".xml": "xml", ".avro": "avro", ".orc": "orc"}
_views = itertools.count(1)
_warned: set[str] = set()


def replace_read_files(statement: str, spark: Any) -> str:
    """``statement`` with each ``read_files(...)`` call replaced by a temporary view of its rows."""
    if "read_files" not in statement.lower():
        return statement
    tokens = tokenize(statement)
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        opening = _next_significant(tokens, index + 1)
        if token.name == "read_files" and token.kind == "word" and opening is not None and tokens[opening].text == "(":
            closing = _closing(tokens, opening)
            if closing is None:
                raise ReadFilesError("read_files( has no closing parenthesis")
            out.append(_view(tokens[opening + 1:closing], spark))
            index = closing + 1
            continue
        out.append(token.text)
        index += 1
    return "".join(out)


def _next_significant(tokens: list[Token], start: int) -> int | None:
    for index in range(start, len(tokens)):
        if tokens[index].kind not in ("space", "comment"):
            return index
    return None


def _closing(tokens: list[Token], opening: int) -> int | None:
    depth = 0
    for index in range(opening, len(tokens)):
        if tokens[index].text == "(":
            depth += 1
        elif tokens[index].text == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _arguments(tokens: list[Token]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments (paths) and named options of the call, as their values."""
    significant = [t for t in tokens if t.kind not in ("space", "comment")]
    groups: list[list[Token]] = [[]]
    depth = 0
    for token in significant:
        if token.text == "," and depth == 0:
            groups.append([])
            continue
        depth += token.text == "("
        depth -= token.text == ")"
        groups[-1].append(token)
    positional: list[str] = []
    named: dict[str, str] = {}
    for group in groups:
        if not group:
            continue
        texts = [t.text for t in group]
        if len(group) >= 4 and texts[1] == "=" and texts[2] == ">":
            named[(group[0].name or texts[0]).lower()] = _value(group[3:])
        else:
            positional.append(_value(group))
    return positional, named


def _value(group: list[Token]) -> str:
    if len(group) == 1 and group[0].kind == "string":
        return unquote_string(group[0].text)
    return "".join(t.text for t in group)


def _view(arguments: list[Token], spark: Any) -> str:
    paths, options = _arguments(arguments)
    if not paths:
        raise ReadFilesError("read_files needs a path as its first argument")
    fmt = options.pop("format", None) or _FORMATS.get(PurePosixPath(paths[0].rstrip("/")).suffix.lower())
    if fmt is None:
        raise ReadFilesError(f"read_files({paths[0]!r}): name the files' format (format => 'csv', 'json', ...)")
    for key in [k for k in options if k in _IGNORED]:
        options.pop(key)
        if key not in _warned:
            _warned.add(key)
            print(f"nbflow: read_files option {key} is not supported locally and is ignored", file=sys.stderr)
    reader = spark.read.format(fmt)
    if fmt in ("csv", "json") and "schema" not in options:
        reader = reader.option("inferSchema", "true")
    schema = options.pop("schema", None)
    if schema is not None:
        reader = reader.schema(schema)
    for key, value in options.items():
        reader = reader.option(key, value)
    # The reader maps Databricks paths and reports a missing one (PATH_NOT_FOUND) itself.
    frame = reader.load(paths if len(paths) > 1 else paths[0])
    name = f"nbflow_read_files_{next(_views)}"
    frame.createOrReplaceTempView(name)
    return f"`{name}`"
