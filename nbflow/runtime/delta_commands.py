"""Delta SQL that Sail does not run, answered by nbflow with delta-rs behind the engine.

Sail (the default engine) reads and writes Delta tables, runs ``MERGE``/``UPDATE``/``DELETE``,
time travel and ``ALTER TABLE t SET|UNSET TBLPROPERTIES`` on a name, but its parser refuses the
Delta utility statements that real notebooks use. :func:`run` answers those itself, with the
result columns Databricks gives, and returns None for every other statement (the engine runs it):

- ``DESCRIBE HISTORY t [LIMIT n]``, ``DESCRIBE DETAIL t``, ``SHOW TBLPROPERTIES t [(key)]``
  (read from the Delta log with delta-rs);
- ``RESTORE [TABLE] t [TO] VERSION|TIMESTAMP AS OF ...``, ``OPTIMIZE t [WHERE ...] [ZORDER BY
  (...)]``, ``VACUUM t [LITE|FULL] [RETAIN n HOURS] [DRY RUN]`` (new commits written by delta-rs;
  Sail reads a table's latest commit on every query, so later reads in every session see them);
- ``ALTER TABLE delta.`/path` SET|UNSET TBLPROPERTIES`` (the engine alters names only) and
  ``ALTER TABLE t UNSET TBLPROPERTIES`` (checked against the Delta log, see :func:`_alter_properties`);
- ``CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t2 [SHALLOW|DEEP] CLONE t [VERSION|TIMESTAMP AS
  OF ...]``: a copy of the data at that version through the engine's ``CREATE TABLE ... AS
  SELECT`` (on Sail a shallow clone is a deep copy too: neither Sail nor delta-rs writes a table
  over another table's files). On the JVM engine too for a deep clone, which is Databricks-only:
  delta-spark's parser knows ``SHALLOW CLONE`` alone, and runs that one itself;
- ``SET key = value`` (Sail's SQL ``SET`` knows no ``spark.*`` key) and ``REFRESH TABLE t``
  (nothing to refresh: Sail keeps no snapshot of a table between queries);
- ``GRANT``, ``REVOKE``, ``DENY``, ``ALTER ... [SET] OWNER TO``, ``SHOW GRANTS``: no-ops with one
  warning line per kind and kernel (one local user).

:func:`unsupported` turns the engine's parser dump for a statement it cannot parse into one line
naming the statement and what nbflow runs instead.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.errors.exceptions.connect import AnalysisException, IllegalArgumentException, ParseException
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ..errors import DeltaCommandFailed, NotebookRuntimeError
from .sql_text import LEADING_COMMENTS, local_path, sql_string

if TYPE_CHECKING:
    from .lakehouse import Lakehouse

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DEFAULT_RETENTION_HOURS = 168.0  # Delta's delta.deletedFileRetentionDuration default: 7 days


class UnsupportedStatement(ParseException, NotebookRuntimeError):
    """A statement the engine cannot parse, in one line naming it and what nbflow runs instead.

    A ``ParseException`` (so an ``AnalysisException``), as Databricks raises for a statement it
    cannot parse: a notebook's ``except AnalysisException`` behaves as there. Also a
    :class:`NotebookRuntimeError`, nbflow's error raised inside a kernel.
    """

    def __init__(self, message: str) -> None:
        ParseException.__init__(self, message=message, errorClass="PARSE_SYNTAX_ERROR",
                                messageParameters={}, sql_state="42601")
        self.args = (message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)


# -- parsing -----------------------------------------------------------------------------------
_PART = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_NAME = rf"{_PART}(?:\s*\.\s*{_PART}){{0,2}}"
_TARGET = rf"(?:{_NAME}|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"  # a name, delta.`/path` or '/path'
_TIME_TRAVEL = r"(?:VERSION\s+AS\s+OF\s+(?P<version>\d+)|TIMESTAMP\s+AS\s+OF\s+(?P<timestamp>.+?))"
_FLAGS = re.IGNORECASE | re.DOTALL


def _statement(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, _FLAGS)


_HISTORY = _statement(rf"DESC(?:RIBE)?\s+HISTORY\s+(?P<t>{_TARGET})(?:\s+LIMIT\s+(?P<limit>\d+))?")
_DETAIL = _statement(rf"DESC(?:RIBE)?\s+DETAIL\s+(?P<t>{_TARGET})")
_SHOW_PROPERTIES = _statement(
    rf"SHOW\s+TBLPROPERTIES\s+(?P<t>{_TARGET})(?:\s*\(\s*(?P<key>'[^']*'|\"[^\"]*\"|[\w.`]+)\s*\))?")
_ALTER_PROPERTIES = _statement(rf"ALTER\s+TABLE\s+(?P<t>{_TARGET})\s+(?P<op>SET|UNSET)\s+TBLPROPERTIES\s*"
                               r"(?P<exists>IF\s+EXISTS\s*)?(?P<list>\(.*\))")
_PROPERTY_KEY = re.compile(r"\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[\w.`-]+)\s*"  # a key, then any value
                           r"(?:=\s*(?:'(?:[^'\\]|\\.)*'|[^,)]+))?\s*,?")
_RESTORE = _statement(rf"RESTORE\s+(?:TABLE\s+)?(?P<t>{_TARGET})\s+(?:TO\s+)?{_TIME_TRAVEL}")
_OPTIMIZE = _statement(
    rf"OPTIMIZE\s+(?P<t>{_TARGET})(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ZORDER\s+BY\s*(?P<zorder>\(.*\)|.+))?")
_VACUUM = _statement(rf"VACUUM\s+(?P<t>{_TARGET})(?:\s+(?P<mode>LITE|FULL))?"
                     r"(?:\s+RETAIN\s+(?P<hours>\d+(?:\.\d*)?)\s+HOURS?)?(?:\s+(?P<dry>DRY\s+RUN))?")
_CLONE = _statement(
    rf"(?:CREATE\s+(?P<replace>OR\s+REPLACE\s+)?|(?P<replace_only>REPLACE\s+))TABLE\s+"
    rf"(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<target>{_NAME})\s+(?:(?P<kind>SHALLOW|DEEP)\s+)?CLONE\s+"
    rf"(?P<t>{_TARGET})(?:\s+{_TIME_TRAVEL})??"
    r"(?:\s+TBLPROPERTIES\s*(?P<properties>\(.*?\)))?(?:\s+LOCATION\s+(?P<location>'(?:[^'\\]|\\.)*'))?")
_SET = _statement(r"SET(?:\s+(?P<key>[A-Za-z_][\w-]*(?:\.[\w-]+)+)\s*(?:=\s*(?P<value>.*?))?)?")
_REFRESH = _statement(rf"REFRESH\s+TABLE\s+(?P<t>{_NAME})")
_GRANTS = _statement(r"(?P<kind>GRANT|REVOKE|DENY)\s+.+")
_OWNER = _statement(rf"ALTER\s+(?:[A-Za-z]+\s+){{1,3}}?{_TARGET}\s+(?:SET\s+)?OWNER\s+TO\s+.+")
_SHOW_GRANTS = _statement(r"SHOW\s+GRANTS?\b.*")
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_KEYWORDS = {"DESCRIBE", "DESC", "SHOW", "ALTER", "RESTORE", "OPTIMIZE", "VACUUM", "CREATE", "REPLACE",
             "SET", "REFRESH", "GRANT", "REVOKE", "DENY"}


def _body(statement: str) -> str:
    """The statement without leading comments and trailing semicolons."""
    return statement[LEADING_COMMENTS.match(statement).end():].strip().rstrip(";").strip()  # type: ignore[union-attr]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1].replace("``", "`")
    return text


def _parts(name: str) -> list[str]:
    return [_unquote(p) for p in re.findall(_PART, name)]


def _looks_like_path(text: str) -> bool:
    return text.startswith("/") or re.match(r"[A-Za-z][\w+.-]*:", text) is not None


# -- resolving tables --------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The table a statement names: its Delta folder, and how Databricks would name it."""

    location: str  # local folder of the table
    shown: str  # as in messages: `s`.`t` or delta.`/path`
    full_name: str | None  # spark_catalog.s.t for a catalog table, None for a path
    sql: str  # how to name it in a statement sent to the engine
    format: str = "delta"


def resolve(lakehouse: Lakehouse, written: str, operation: str) -> Target:
    """The table ``written`` names (``t``, ``s.t``, ``c.s.t``, ``delta.`/path```, ``'/path'``).

    An unknown name raises Spark's ``TABLE_OR_VIEW_NOT_FOUND``; a folder without a Delta log,
    or a table of another format, Delta's own error for ``operation``.
    """
    written = written.strip()
    parts = _parts(written)
    path = _written_path(written)
    if path is not None:
        location = local_path(lakehouse.spark_path(path))
        shown = "delta.`" + path.replace("`", "``") + "`"
        if not (Path(location) / "_delta_log").is_dir():
            raise _analysis("DELTA_MISSING_DELTA_TABLE", f"{shown} is not a Delta table.", {"tableName": shown},
                            "42P01")
        return Target(location, shown, None, "delta.`" + location.replace("`", "``") + "`")
    shown = ".".join("`" + p.replace("`", "``") + "`" for p in parts)
    entry = lakehouse.table_entry(written)
    if entry is None:
        lakehouse.push()  # created earlier in this very cell by a path nbflow does not watch
        entry = lakehouse.table_entry(written)
    if entry is None:
        raise _analysis(
            "TABLE_OR_VIEW_NOT_FOUND",
            f"The table or view {shown} cannot be found. Verify the spelling and correctness of the schema and "
            "catalog.", {"relationName": shown}, "42P01")
    if entry.format.lower() != "delta":
        raise _analysis("DELTA_ONLY_OPERATION", f"{operation} is only supported for Delta tables.",
                        {"operation": operation}, "0AKDD")
    return Target(entry.location, shown, entry.full_name, written, entry.format)


def _written_path(written: str) -> str | None:
    """The path a table reference names (``delta.`/path```, ``'/path'``), None for a name."""
    if written[0] in "'\"":
        return _unquote(written)
    parts = _parts(written)
    if len(parts) == 2 and parts[0].lower() == "delta" and written.rstrip().endswith("`") \
            and _looks_like_path(parts[1]):
        return parts[1]
    return None


def _analysis(error_class: str, message: str, parameters: dict[str, str], sql_state: str) -> Exception:
    return AnalysisException(message=f"[{error_class}] {message} SQLSTATE: {sql_state}", errorClass=error_class,
                             messageParameters=parameters, sql_state=sql_state)


def _delta(location: str, version: int | None = None) -> Any:
    from deltalake import DeltaTable  # lazy: deltalake and pyarrow are heavy (kernel start-up)

    table = DeltaTable(location)
    if version is not None:
        table.load_as_version(version)
    return table


def _delta_rs(what: str, action: Callable[[], Any]) -> Any:
    """Run a delta-rs operation; its failure becomes one line naming the statement."""
    from deltalake.exceptions import DeltaError  # lazy: deltalake and pyarrow are heavy (kernel start-up)

    try:
        return action()
    except DeltaError as exc:
        reason = str(exc).splitlines()[0].removeprefix("Generic error: ")
        raise DeltaCommandFailed(f"{what}: {reason}") from None


def _files(table: Any) -> dict[str, int]:
    """The table's data files (path -> size in bytes) in its loaded version."""
    import pyarrow as pa  # lazy: deltalake and pyarrow are heavy (kernel start-up)

    actions = pa.table(table.get_add_actions(flatten=True))
    return dict(zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(), strict=True))


def _utc(millis: int | None) -> dt.datetime | None:
    return None if millis is None else dt.datetime.fromtimestamp(millis / 1000, tz=dt.timezone.utc)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- results (shared with nbflow's DeltaTable) -------------------------------------------------
_HISTORY_SCHEMA = StructType([
    StructField("version", LongType()), StructField("timestamp", TimestampType()),
    StructField("userId", StringType()), StructField("userName", StringType()),
    StructField("operation", StringType()), StructField("operationParameters", MapType(StringType(), StringType())),
    StructField("job", StructType([StructField(f, StringType()) for f in
                                   ("jobId", "jobName", "jobRunId", "runId", "jobOwnerId", "triggerType")])),
    StructField("notebook", StructType([StructField("notebookId", StringType())])),
    StructField("clusterId", StringType()), StructField("readVersion", LongType()),
    StructField("isolationLevel", StringType()), StructField("isBlindAppend", BooleanType()),
    StructField("operationMetrics", MapType(StringType(), StringType())),
    StructField("userMetadata", StringType()), StructField("engineInfo", StringType()),
])


def history_frame(spark: Any, location: str, limit: int | None = None) -> Any:
    """``DESCRIBE HISTORY``: the table's commits, newest first, with Databricks' 15 columns."""
    rows = []
    for commit in _delta_rs("DESCRIBE HISTORY", lambda: _delta(location).history(limit)):
        job = commit.get("job")
        notebook = commit.get("notebook")
        rows.append((
            commit.get("version"), _utc(commit.get("timestamp")), commit.get("userId"), commit.get("userName"),
            commit.get("operation"),
            {str(k): _text(v) for k, v in (commit.get("operationParameters") or {}).items()},
            {k: None if v is None else str(v) for k, v in job.items()} if isinstance(job, dict) else None,
            {"notebookId": str(notebook.get("notebookId"))} if isinstance(notebook, dict) else None,
            commit.get("clusterId"), commit.get("readVersion"), commit.get("isolationLevel"),
            commit.get("isBlindAppend"),
            {str(k): _text(v) for k, v in (commit.get("operationMetrics") or {}).items()} or None,
            commit.get("userMetadata"), commit.get("engineInfo") or commit.get("clientVersion"),
        ))
    return spark.createDataFrame(rows, _HISTORY_SCHEMA)


# Table features that a legacy protocol version implies (Delta's protocol specification).
_READER_FEATURES = {2: ["columnMapping"]}
_WRITER_FEATURES = {2: ["appendOnly", "invariants"], 3: ["checkConstraints"],
                    4: ["changeDataFeed", "generatedColumns"], 5: ["columnMapping"], 6: ["identityColumns"]}


def _features(protocol: Any) -> list[str]:
    names: list[str] = []
    for versions, explicit, version in ((_READER_FEATURES, protocol.reader_features, protocol.min_reader_version),
                                        (_WRITER_FEATURES, protocol.writer_features, protocol.min_writer_version)):
        if explicit:
            names += list(explicit)
        else:
            names += [f for v, fs in versions.items() if v <= version for f in fs]
    return sorted(set(names))


_DETAIL_SCHEMA = StructType([
    StructField("format", StringType()), StructField("id", StringType()), StructField("name", StringType()),
    StructField("description", StringType()), StructField("location", StringType()),
    StructField("createdAt", TimestampType()), StructField("lastModified", TimestampType()),
    StructField("partitionColumns", ArrayType(StringType())), StructField("clusteringColumns", ArrayType(StringType())),
    StructField("numFiles", LongType()), StructField("sizeInBytes", LongType()),
    StructField("properties", MapType(StringType(), StringType())),
    StructField("minReaderVersion", IntegerType()), StructField("minWriterVersion", IntegerType()),
    StructField("tableFeatures", ArrayType(StringType())), StructField("statistics", MapType(StringType(), LongType())),
])


def detail_frame(spark: Any, location: str, name: str | None) -> Any:
    """``DESCRIBE DETAIL``: one row about the table's latest version, with Databricks' columns."""
    table = _delta_rs("DESCRIBE DETAIL", lambda: _delta(location))
    meta, protocol = table.metadata(), table.protocol()
    files = _files(table)
    last = table.history(1)
    row: tuple[Any, ...] = (
        "delta", meta.id, name, meta.description, location, _utc(meta.created_time),
        _utc(last[0].get("timestamp")) if last else None, list(meta.partition_columns), [],
        len(files), sum(files.values()), dict(meta.configuration), protocol.min_reader_version,
        protocol.min_writer_version, _features(protocol),
        {"numRowsDeletedByDeletionVectors": 0, "numDeletionVectors": 0},  # neither engine writes deletion vectors
    )
    return spark.createDataFrame([row], _DETAIL_SCHEMA)


def properties(location: str) -> list[tuple[str, str]]:
    """``SHOW TBLPROPERTIES``: the table's properties, then its protocol as Delta shows it."""
    table = _delta_rs("SHOW TBLPROPERTIES", lambda: _delta(location))
    protocol = table.protocol()
    rows = [(str(k), str(v)) for k, v in table.metadata().configuration.items()]
    rows += [("delta.minReaderVersion", str(protocol.min_reader_version)),
             ("delta.minWriterVersion", str(protocol.min_writer_version))]
    rows += [(f"delta.feature.{f}", "supported") for f in sorted(set(protocol.reader_features or [])
                                                                   | set(protocol.writer_features or []))]
    return rows


_RESTORE_SCHEMA = StructType([StructField(c, LongType()) for c in (
    "table_size_after_restore", "num_of_files_after_restore", "num_removed_files", "num_restored_files",
    "removed_files_size", "restored_files_size")])


def version_at(location: str, micros: int, shown: str, restoring: bool = False) -> int:
    """The table's version at a time: the last commit at or before it (as Delta's time travel).

    A time before the first commit is Delta's error; ``restoring`` (``RESTORE``) uses delta-spark's
    own errors for it, and for a time after the last commit, which RESTORE refuses too.
    """
    commits = _delta_rs("TIMESTAMP AS OF", lambda: _delta(location).history())
    when = dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc).isoformat(sep=" ")
    latest = max(commits, key=lambda c: int(c["version"]))
    if restoring and micros > int(latest["timestamp"]) * 1000:
        last = str(_utc(int(latest["timestamp"])))
        raise _analysis("DELTA_CANNOT_RESTORE_TIMESTAMP_GREATER",
                        f"Cannot restore table to timestamp ({when}) as it is after the latest version available. "
                        f"Please use a timestamp before ({last})",
                        {"requestedTimestamp": when, "latestTimestamp": last}, "22003")
    versions = [int(c["version"]) for c in commits if int(c["timestamp"]) * 1000 <= micros]
    if versions:
        return max(versions)
    earliest = min(commits, key=lambda c: int(c["version"]))
    first = str(_utc(int(earliest["timestamp"])))
    if restoring:
        raise _analysis("DELTA_CANNOT_RESTORE_TIMESTAMP_EARLIER",
                        f"Cannot restore table to timestamp ({when}) as it is before the earliest version available. "
                        f"Please use a timestamp after ({first}).", {"requestedTimestamp": when,
                                                                     "earliestTimestamp": first}, "22003")
    raise _analysis("DELTA_TIMESTAMP_EARLIER_THAN_COMMIT_RETENTION",
                    f"The provided timestamp ({when}) is before the earliest version available to {shown} ({first}).",
                    {"userTimestamp": when, "commitTs": first}, "42816")


def timestamp_micros(spark: Any, expression: str) -> int:
    """A ``TIMESTAMP AS OF`` expression (a string, ``current_timestamp() - INTERVAL 1 DAY``...)
    evaluated by the engine, as microseconds since the epoch (the session's time zone applies)."""
    return int(spark.sql(f"SELECT unix_micros(CAST(({expression}) AS TIMESTAMP)) AS t").collect()[0][0])


def restore_frame(spark: Any, location: str, version: int, shown: str) -> Any:
    """``RESTORE``: a new commit that makes the table as it was at ``version`` (delta-rs)."""
    before = _files(_delta(location))
    _delta_rs(f"RESTORE {shown} TO VERSION AS OF {version}", lambda: _delta(location).restore(version))
    after = _files(_delta(location))
    removed = [size for path, size in before.items() if path not in after]
    restored = [size for path, size in after.items() if path not in before]
    row = (sum(after.values()), len(after), len(removed), len(restored), sum(removed), sum(restored))
    return spark.createDataFrame([row], _RESTORE_SCHEMA)


_FILE_STATS = StructType([StructField("min", LongType()), StructField("max", LongType()),
                          StructField("avg", DoubleType()), StructField("totalFiles", LongType()),
                          StructField("totalSize", LongType())])
_OPTIMIZE_SCHEMA = StructType([
    StructField("path", StringType()),
    StructField("metrics", StructType([
        StructField("numFilesAdded", LongType()), StructField("numFilesRemoved", LongType()),
        StructField("filesAdded", _FILE_STATS), StructField("filesRemoved", _FILE_STATS),
        StructField("partitionsOptimized", LongType()), StructField("numBatches", LongType()),
        StructField("totalConsideredFiles", LongType()), StructField("totalFilesSkipped", LongType()),
        StructField("preserveInsertionOrder", BooleanType()),
    ])),
])
_COMPARISON = re.compile(
    rf"\s*(?P<col>{_PART})\s*(?P<op>==|=|!=|<>|<=|>=|<|>)\s*(?P<value>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[\w.+-]+)\s*",
    _FLAGS)
_MEMBERSHIP = re.compile(rf"\s*(?P<col>{_PART})\s+(?P<op>NOT\s+IN|IN)\s*\((?P<values>[^()]*)\)\s*", _FLAGS)


def partition_filters(location: str, where: str, shown: str) -> list[tuple[str, str, Any]]:
    """``OPTIMIZE ... WHERE``: AND-ed comparisons of partition columns with literals, as delta-rs
    partition filters. Databricks also allows only partition columns there."""
    partitions = list(_delta(location).metadata().partition_columns)
    filters: list[tuple[str, str, Any]] = []
    for conjunct in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE):
        compared, member = _COMPARISON.fullmatch(conjunct), _MEMBERSHIP.fullmatch(conjunct)
        if compared is None and member is None:
            raise DeltaCommandFailed(
                f"OPTIMIZE {shown} WHERE {where}: nbflow (delta-rs) takes AND-ed comparisons of partition columns "
                f"with literals (p = 'x', p >= 3, p IN ('a', 'b')); cannot use: {conjunct.strip()}")
        match = compared or member
        assert match is not None
        column = _unquote(match["col"])
        if column not in partitions:
            raise _analysis("DELTA_NON_PARTITION_COLUMN_REFERENCE",
                            f"Predicate references non-partition column '{column}'. Only the partition columns "
                            f"may be referenced: [{', '.join(partitions)}]", {"columnName": column}, "42P10")
        if compared is not None:
            op = {"==": "=", "<>": "!="}.get(compared["op"], compared["op"])
            filters.append((column, op, _unquote(compared["value"])))
        elif member is not None:
            values = [_unquote(v) for v in re.findall(r"'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^,\s]+", member["values"])]
            filters.append((column, "not in" if member["op"].upper().startswith("NOT") else "in", values))
    return filters


def optimize_frame(spark: Any, location: str, shown: str, filters: list[tuple[str, str, Any]] | None = None,
                   zorder: list[str] | None = None) -> Any:
    """``OPTIMIZE``: compact small files (or Z-order them by ``zorder``) with delta-rs."""
    table = _delta(location)
    partitions = list(table.metadata().partition_columns)
    if zorder:
        clash = [c for c in zorder if c in partitions]
        if clash:
            raise _analysis("DELTA_ZORDERING_ON_PARTITION_COLUMN",
                            f"{clash[0]} is a partition column. Z-Ordering can only be performed on data columns",
                            {"colName": clash[0]}, "42P10")
        metrics = _delta_rs(f"OPTIMIZE {shown} ZORDER BY", lambda: table.optimize.z_order(
            zorder, partition_filters=filters or None))
    else:
        metrics = _delta_rs(f"OPTIMIZE {shown}", lambda: table.optimize.compact(partition_filters=filters or None))

    def stats(text: Any) -> tuple[Any, ...]:
        values = json.loads(text) if isinstance(text, str) else (text or {})
        return (values.get("min"), values.get("max"), values.get("avg"), values.get("totalFiles"),
                values.get("totalSize"))

    row = (location, (metrics.get("numFilesAdded"), metrics.get("numFilesRemoved"),
                      stats(metrics.get("filesAdded")), stats(metrics.get("filesRemoved")),
                      metrics.get("partitionsOptimized"), metrics.get("numBatches"),
                      metrics.get("totalConsideredFiles"), metrics.get("totalFilesSkipped"),
                      metrics.get("preserveInsertionOrder")))
    return spark.createDataFrame([row], _OPTIMIZE_SCHEMA)


def _retention_hours(table: Any) -> float:
    """The table's ``delta.deletedFileRetentionDuration`` in hours (Delta's default: 7 days)."""
    setting = table.metadata().configuration.get("delta.deletedFileRetentionDuration", "")
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s*(week|day|hour|minute|second)s?\s*", setting,
                         re.IGNORECASE)
    if match is None:
        return DEFAULT_RETENTION_HOURS
    hours = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600}
    return float(match[1]) * hours[match[2].lower()]


def vacuum_frame(spark: Any, location: str, shown: str, hours: float | None = None, dry_run: bool = False,
                 lite: bool = False) -> Any:
    """``VACUUM``: delete files no version within the retention period needs (delta-rs).

    As on Databricks, a retention shorter than the table's (7 days by default) is refused unless
    ``spark.databricks.delta.retentionDurationCheck.enabled`` is ``false``. A dry run lists the
    files it would delete; otherwise the result is the table's path.
    """
    table = _delta(location)
    minimum = _retention_hours(table)
    if hours is not None and hours < minimum:
        check = str(spark.conf.get(RETENTION_CHECK, "true")).strip().strip("'\"").lower()
        if check != "false":
            # delta-spark's error class and text, naming the whole key (its text says
            # "delta.retentionDurationCheck.enabled", not the session key).
            raise IllegalArgumentException(
                message="[DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT] The specified VACUUM retention period is too low "
                        "and may corrupt this Delta table if any writes are in progress.\n\nIf no operations (insert, "
                        "upsert, delete, optimize) are running, you can disable this safety check by setting:\n"
                        f"{RETENTION_CHECK} = false\n\nOtherwise, use a retention period of at least {minimum:g} "
                        "hours. SQLSTATE: 22003", errorClass="DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT",
                messageParameters={"configuredRetentionHours": f"{minimum:g}"}, sql_state="22003")
    deleted = _delta_rs(f"VACUUM {shown}", lambda: table.vacuum(
        retention_hours=None if hours is None else math.ceil(hours), dry_run=dry_run,
        enforce_retention_duration=False, full=not lite))
    schema = StructType([StructField("path", StringType())])
    if dry_run:
        # A file removed twice (restored, then removed again) is listed once.
        return spark.createDataFrame([(str(Path(location) / path),) for path in sorted(set(deleted))], schema)
    return spark.createDataFrame([(location,)], schema)


# -- statements --------------------------------------------------------------------------------
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(kind: str, line: str) -> None:
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    print(line, file=sys.stderr)


def _empty(spark: Any, columns: tuple[str, ...] = ()) -> Any:
    return spark.createDataFrame([], StructType([StructField(c, StringType()) for c in columns]))


def _history(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "DESCRIBE HISTORY")
    return history_frame(lakehouse.spark(), target.location, int(m["limit"]) if m["limit"] else None)


def _detail(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "DESCRIBE DETAIL")
    return detail_frame(lakehouse.spark(), target.location, target.full_name)


def _engine_detail(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    """``DESCRIBE DETAIL`` on the JVM engine: delta-spark's own row, with the table named as Unity
    Catalog names it (``main.default.t``, as on Databricks) rather than by the engine catalog that
    serves it (``spark_catalog.default.t``). A path's row keeps its null name."""
    from pyspark.sql import functions as F  # lazy: pyspark is heavy (kernel start-up)

    result = lakehouse._run_statement(lakehouse._raw_sql, m.string)
    if _written_path(m["t"].strip()) is not None:
        return result
    entry = lakehouse.table_entry(m["t"].strip())
    return result if entry is None else result.withColumn("name", F.lit(entry.full_name))


def _show_properties(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "SHOW TBLPROPERTIES")
    rows = properties(target.location)
    if m["key"]:
        key = _unquote(m["key"])
        value = dict(rows).get(key, f"Table {target.full_name or target.shown} does not have property: {key}")
        rows = [(key, value)]
    schema = StructType([StructField("key", StringType()), StructField("value", StringType())])
    return lakehouse.spark().createDataFrame(rows, schema)


def _alter_properties(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    """``ALTER TABLE t SET|UNSET TBLPROPERTIES``, where the engine falls short.

    Sail alters a table by name only, so a path (``delta.`/path```) gets a private name for the
    one statement (under the lakehouse lock, so that no cell-end sharing registers it). Sail also
    checks an UNSET key against its own copy of the properties, taken when the session attached
    the table: a key another session set is removed from the log and then reported missing. So
    nbflow checks UNSET keys against the Delta log itself (Spark's error for a missing one) and
    sends the engine ``UNSET TBLPROPERTIES IF EXISTS``.
    """
    written = m["t"].strip()
    parts = _parts(written)
    by_path = written[0] in "'\"" or (len(parts) == 2 and parts[0].lower() == "delta" and _looks_like_path(parts[1]))
    unset = m["op"].upper() == "UNSET"
    if not by_path and not unset:
        return None  # SET on a name: the engine runs it
    target = resolve(lakehouse, written, "ALTER TABLE")
    if unset:
        keys = [_unquote(k) for k in _PROPERTY_KEY.findall(m["list"].strip()[1:-1])]
        present = dict(properties(target.location))
        missing = [k for k in keys if k not in present]
        if missing and not m["exists"]:
            listed = ", ".join("`" + k + "`" for k in missing)
            raise _analysis("UNSET_NONEXISTENT_PROPERTIES", f"Attempted to unset non-existent properties [{listed}] in "
                            f"table {target.full_name or target.shown}.", {"properties": listed,
                                                                           "table": target.full_name or target.shown},
                            "42K0J")
        change = f"UNSET TBLPROPERTIES IF EXISTS {m['list']}"
    else:
        change = f"SET TBLPROPERTIES {m['list']}"
    raw = lakehouse._raw_sql
    if not by_path:
        raw(f"ALTER TABLE {target.sql} {change}").collect()
        return _empty(lakehouse.spark())
    name = f"nbflow_alter_{uuid.uuid4().hex[:12]}"
    with lakehouse._lock:
        raw(f"CREATE TABLE `{name}` USING delta LOCATION {sql_string(target.location)}").collect()
        try:
            raw(f"ALTER TABLE `{name}` {change}").collect()
        finally:
            raw(f"DROP TABLE IF EXISTS `{name}`").collect()  # attached by location: its data stays
    return _empty(lakehouse.spark())


def _restore(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "RESTORE")
    spark = lakehouse.spark()
    if m["version"] is not None:
        version = int(m["version"])
    else:
        version = version_at(target.location, timestamp_micros(spark, m["timestamp"]), target.shown, restoring=True)
    return restore_frame(spark, target.location, version, target.shown)


def _optimize(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "OPTIMIZE")
    filters = partition_filters(target.location, m["where"], target.shown) if m["where"] else None
    zorder = None
    if m["zorder"]:
        zorder = [_unquote(c) for c in re.findall(_PART, m["zorder"].strip().strip("()"))]
    return optimize_frame(lakehouse.spark(), target.location, target.shown, filters, zorder)


def _vacuum(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    target = resolve(lakehouse, m["t"], "VACUUM")
    hours = float(m["hours"]) if m["hours"] else None
    return vacuum_frame(lakehouse.spark(), target.location, target.shown, hours, dry_run=m["dry"] is not None,
                        lite=(m["mode"] or "").upper() == "LITE")


_CLONE_SCHEMA = StructType([StructField(c, LongType()) for c in (
    "source_table_size", "source_num_of_files", "num_removed_files", "num_copied_files", "removed_files_size",
    "copied_files_size")])


def _clone(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    """``CREATE TABLE t2 [SHALLOW|DEEP] CLONE t``: the engine's ``CREATE TABLE ... AS SELECT`` of the
    source at the version asked, with its partitioning and properties (a new managed table, or at
    ``LOCATION``); the metrics are Databricks'. None for a shallow clone on the JVM engine:
    delta-spark runs it (a table over the source's files, as on Databricks)."""
    shallow = (m["kind"] or "").upper() == "SHALLOW"
    if shallow and getattr(lakehouse.state, "engine", "") == "spark":
        return None
    spark = lakehouse.spark()
    source = resolve(lakehouse, m["t"], "CLONE")
    if shallow:
        _warn_once("SHALLOW CLONE", "nbflow: SHALLOW CLONE copies the data locally (a deep clone): neither Sail nor "
                                    "delta-rs writes a table over another table's files")
    if m["version"] is not None:
        version = int(m["version"])
    elif m["timestamp"] is not None:
        version = version_at(source.location, timestamp_micros(spark, m["timestamp"]), source.shown)
    else:
        version = _delta(source.location).version()
    snapshot = _delta_rs(f"CLONE {source.shown} VERSION AS OF {version}", lambda: _delta(source.location, version))
    source_files = _files(snapshot)
    gone = [path for path in source_files if not _looks_like_path(path) and not any(
        (Path(source.location) / p).exists() for p in (path, urllib.parse.unquote(path)))]
    if gone:  # checked first: a CTAS that fails on a missing file leaves an empty table behind on Sail
        raise DeltaCommandFailed(f"CLONE {source.shown} VERSION AS OF {version}: {len(gone)} data file(s) of that "
                                 f"version were removed (VACUUM), e.g. {gone[0]}; clone a later version")
    replace = bool(m["replace"] or m["replace_only"])
    existing = lakehouse.table_entry(m["target"])
    if existing is not None and not replace:
        if m["exists"]:
            return spark.createDataFrame([(sum(source_files.values()), len(source_files), 0, 0, 0, 0)], _CLONE_SCHEMA)
        shown = ".".join("`" + p + "`" for p in _parts(m["target"]))
        raise _analysis("TABLE_OR_VIEW_ALREADY_EXISTS", f"Cannot create table or view {shown} because it already "
                        "exists.", {"relationName": shown}, "42P07")
    removed = _files(_delta(existing.location)) if existing is not None and existing.format == "delta" else {}
    meta = snapshot.metadata()
    clauses = ""
    if meta.partition_columns:
        columns = ", ".join("`" + c.replace("`", "``") + "`" for c in meta.partition_columns)
        clauses += f" PARTITIONED BY ({columns})"
    props = {str(k): str(v) for k, v in meta.configuration.items()}
    given = m["properties"]
    if props or given:
        listed = [f"{sql_string(k)} = {sql_string(v)}" for k, v in props.items()]
        if given:
            listed.append(given.strip()[1:-1])
        clauses += " TBLPROPERTIES (" + ", ".join(x for x in listed if x.strip()) + ")"
    if m["location"]:
        clauses += f" LOCATION {m['location']}"
    head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
    spark.sql(f"{head} {m['target']}{clauses} AS SELECT * FROM {source.sql} VERSION AS OF {version}").collect()
    created = lakehouse.table_entry(m["target"])
    copied = _files(_delta(created.location)) if created is not None else {}
    row = (sum(source_files.values()), len(source_files), len(removed), len(copied), sum(removed.values()),
           sum(copied.values()))
    return spark.createDataFrame([row], _CLONE_SCHEMA)


def _set(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    """``SET key = value`` / ``SET key`` / ``SET``: the session's configuration (Spark's columns)."""
    spark = lakehouse.spark()
    schema = StructType([StructField("key", StringType()), StructField("value", StringType())])
    if m["key"] is None:
        return spark.createDataFrame(sorted(spark.conf.getAll.items()), schema)
    if m["value"] is not None:
        spark.conf.set(m["key"], m["value"].strip())
    return spark.createDataFrame([(m["key"], spark.conf.get(m["key"], "<undefined>"))], schema)


def _refresh(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
    resolve(lakehouse, m["t"], "REFRESH TABLE")  # Sail reads the latest commit on every query
    return _empty(lakehouse.spark())


def _permissions(kind: str) -> Callable[[Lakehouse, re.Match[str]], Any]:
    def handler(lakehouse: Lakehouse, m: re.Match[str]) -> Any:
        shown = (m.groupdict().get("kind") or kind).upper()
        if shown == "SHOW GRANTS":
            _warn_once(shown, "nbflow: SHOW GRANTS is a no-op locally: one local user, no grants (empty result)")
            return _empty(lakehouse.spark(), ("principal", "actionType", "objectType", "objectKey"))
        _warn_once(shown, f"nbflow: {shown} is a no-op locally: one local user")
        return _empty(lakehouse.spark())
    return handler


Handler = Callable[["Lakehouse", "re.Match[str]"], Any]
# (pattern, handler, engines it is for): Delta commands only on Sail (the JVM engine with Delta runs
# them itself) but CLONE, whose deep form delta-spark lacks; the permission no-ops on any local
# engine (an external cluster may enforce them). A handler may return None: the engine runs it.
_DELTA_ENGINES = ("sail",)
_LOCAL_ENGINES = ("sail", "spark")
_HANDLERS: list[tuple[re.Pattern[str], Handler, tuple[str, ...]]] = [
    (_HISTORY, _history, _DELTA_ENGINES),
    (_DETAIL, _detail, _DELTA_ENGINES),
    (_DETAIL, _engine_detail, ("spark",)),
    (_SHOW_PROPERTIES, _show_properties, _DELTA_ENGINES),
    (_ALTER_PROPERTIES, _alter_properties, _DELTA_ENGINES),
    (_RESTORE, _restore, _DELTA_ENGINES),
    (_OPTIMIZE, _optimize, _DELTA_ENGINES),
    (_VACUUM, _vacuum, _DELTA_ENGINES),
    (_CLONE, _clone, _LOCAL_ENGINES),  # a deep clone on both (delta-spark has none)
    (_SET, _set, _DELTA_ENGINES),
    (_REFRESH, _refresh, _DELTA_ENGINES),
    (_GRANTS, _permissions("GRANT"), _LOCAL_ENGINES),
    (_OWNER, _permissions("ALTER ... OWNER TO"), _LOCAL_ENGINES),
    (_SHOW_GRANTS, _permissions("SHOW GRANTS"), _LOCAL_ENGINES),
]


def run(lakehouse: Lakehouse, statement: str, *args: Any, **kwargs: Any) -> Any | None:
    """The result of ``statement`` if nbflow answers it itself, else None (the engine runs it).

    ``args``/``kwargs`` are ``spark.sql``'s own: simple keyword values are formatted into the
    statement as ``spark.sql`` does (``DESCRIBE HISTORY {t}``); anything else goes to the engine.
    """
    body = _body(statement)
    first = _FIRST_WORD.match(body)
    if first is None or first[0].upper() not in _KEYWORDS:
        return None
    if kwargs:
        if not all(isinstance(v, str | int | float) for v in kwargs.values()):
            return None
        try:
            body = body.format(**kwargs)
        except (KeyError, IndexError, ValueError):
            return None
    engine = getattr(lakehouse.state, "engine", "")
    for pattern, handler, engines in _HANDLERS:
        match = pattern.fullmatch(body)
        if match is not None and engine in engines:
            return handler(lakehouse, match)
    return None


# -- statements the engine cannot parse --------------------------------------------------------
_SAIL_PARSE = re.compile(r"invalid argument: found (?P<token>.+?) at (?P<start>\d+):(?P<end>\d+) expected")
_SPARK_PARSE = re.compile(r"\[PARSE_SYNTAX_ERROR\] Syntax error at or near (?P<token>'(?:[^']|'')*'|[^.\s]+)"
                          r"(?:.*?\(line (?P<line>\d+), pos (?P<pos>\d+)\))?", re.DOTALL)
_GENERAL = ("Spark SQL as the engine parses it, plus (answered by nbflow) DESCRIBE HISTORY|DETAIL t, "
            "SHOW TBLPROPERTIES t, RESTORE, OPTIMIZE, VACUUM, CREATE TABLE ... CLONE, SET key = value, "
            "REFRESH TABLE t and GRANT/REVOKE/DENY/OWNER TO (no-ops)")
# On the JVM engine delta-spark parses and runs the Delta commands itself: nbflow adds deep clones
# (Databricks-only) and the permission no-ops.
_GENERAL_SPARK = ("Spark SQL with Delta Lake's commands (DESCRIBE HISTORY|DETAIL t, SHOW TBLPROPERTIES t, RESTORE, "
                  "OPTIMIZE, VACUUM, CREATE TABLE ... SHALLOW CLONE), plus (answered by nbflow) CREATE TABLE ... "
                  "[DEEP] CLONE and GRANT/REVOKE/DENY/OWNER TO (no-ops)")
# (statement, the form nbflow runs on Sail, the form delta-spark takes on the JVM engine if another)
_FORMS: list[tuple[re.Pattern[str], str, str | None]] = [(re.compile(p, _FLAGS), form, spark) for p, form, spark in [
    (r"DESC(?:RIBE)?\s+HISTORY\b", "DESCRIBE HISTORY t [LIMIT n]", None),
    (r"DESC(?:RIBE)?\s+DETAIL\b", "DESCRIBE DETAIL t", None),
    (r"DESC(?:RIBE)?\b", "DESCRIBE [TABLE] [EXTENDED] t, DESCRIBE HISTORY t [LIMIT n], DESCRIBE DETAIL t", None),
    (r"SHOW\s+TBLPROPERTIES\b", "SHOW TBLPROPERTIES t [('key')]", None),
    (r"SHOW\b", "SHOW TABLES|VIEWS|SCHEMAS|CATALOGS|COLUMNS|FUNCTIONS ..., SHOW TBLPROPERTIES t [('key')], "
                "SHOW GRANTS (empty)", None),
    (r"RESTORE\b", "RESTORE [TABLE] t [TO] VERSION AS OF n | TIMESTAMP AS OF 'timestamp'", None),
    (r"OPTIMIZE\b", "OPTIMIZE t [WHERE partition_column = 'value' [AND ...]] [ZORDER BY (col, ...)]",
     "OPTIMIZE t [FULL] [WHERE partition_predicate] [ZORDER BY (col, ...)]"),
    (r"VACUUM\b", "VACUUM t [LITE|FULL] [RETAIN n HOURS] [DRY RUN]",
     "VACUUM t [LITE|FULL] [USING INVENTORY ...] [RETAIN n HOURS] [DRY RUN]"),
    (r"(?:CREATE|REPLACE)\b.*\bCLONE\b", "CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t2 [SHALLOW|DEEP] CLONE t "
                                        "[VERSION AS OF n | TIMESTAMP AS OF 'ts'] [TBLPROPERTIES (...)] "
                                        "[LOCATION 'path']", None),
    (r"ALTER\s+TABLE\b", "ALTER TABLE t RENAME TO|ADD COLUMNS|DROP COLUMN|ALTER COLUMN|SET TBLPROPERTIES|"
                         "UNSET TBLPROPERTIES ..., ALTER ... [SET] OWNER TO (no-op)", None),
    (r"SET\b", "SET key = value, SET key, SET", None),
]]


def unsupported(statement: str, error: BaseException, engine: str) -> UnsupportedStatement | None:
    """The one-line error for a statement the engine cannot parse, or None for any other error.

    Recognises Sail's parser ("invalid argument: found X at S:E expected ...") and Spark's
    ``PARSE_SYNTAX_ERROR``; the engine's dump (expected tokens, the statement drawn with carets)
    is left out. On Sail the forms named are the ones nbflow answers itself; on the JVM engine,
    where delta-spark runs the Delta commands, the ones delta-spark takes.
    """
    text = str(error)
    sail, spark = _SAIL_PARSE.search(text), _SPARK_PARSE.search(text)
    if sail is not None:
        start = int(sail["start"])
        line = statement.count("\n", 0, start) + 1
        where = f"at {sail['token']!r} (line {line}, pos {start - (statement.rfind(chr(10), 0, start) + 1)})"
    elif spark is not None:
        token = spark["token"].strip("'")
        where = f"at {token!r}" + (f" (line {spark['line']}, pos {spark['pos']})" if spark["line"] else "")
    else:
        return None
    body = _body(statement)
    shown = " ".join(body.split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    name, lead, general = {"sail": ("Sail", "nbflow runs instead", _GENERAL),
                           "spark": ("Spark", "Spark with Delta runs", _GENERAL_SPARK)}.get(
        engine, ("the engine", "supported", "Spark SQL as the engine parses it"))
    form = next(((sail_form if engine == "sail" else spark_form or sail_form) for pattern, sail_form, spark_form
                 in _FORMS if pattern.match(body)), general)
    return UnsupportedStatement(f"[PARSE_SYNTAX_ERROR] {name} cannot parse \"{shown}\" {where}; {lead}: {form}")
