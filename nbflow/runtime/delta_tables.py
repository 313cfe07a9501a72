"""``delta.tables.DeltaTable`` for engines without the Delta Lake Python API over Spark Connect.

Neither Sail nor the JVM engine here serve the Delta Connect relations behind delta-spark's own
``DeltaTable`` (the JVM engine would need delta-connect-server, which Maven Central's mirror here
does not serve). This class offers the same API as Delta SQL (``MERGE``, ``UPDATE``, ``DELETE``,
``DESCRIBE HISTORY|DETAIL``, ``RESTORE``, ``OPTIMIZE``, ``VACUUM``): delta-spark runs those
statements itself on the JVM engine; on Sail nbflow answers the ones Sail lacks from the Delta log
with delta-rs (:mod:`nbflow.runtime.delta_commands`). It is installed as ``delta.tables`` in a
kernel only when delta-spark is not installed.

Conditions and expressions are SQL strings (``"t.id = s.id"``, ``{"amount": "s.amount"}``) or
Columns (``F.col("t.id") == F.col("s.id")``, ``{"amount": F.col("s.amount") * 2}``): a Spark
Connect Column is an expression tree on the client, which :func:`column_sql` writes as SQL
(comparisons, AND/OR/NOT, arithmetic, literals, functions, CASE WHEN, CAST, ``F.expr``...); a
Column that has no SQL form (a Python UDF, a window) fails with one line saying so.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..catalog import Registry, TableEntry
from ..errors import ColumnNotExpressible, NotebookRuntimeError
from .active import current
from .sql_text import local_path, sql_ident, sql_string

# Spark Connect's names for operators (pyspark.sql.connect.column) and their SQL.
_BINARY = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "<=>": "<=>", "+": "+", "-": "-",
           "*": "*", "/": "/", "%": "%", "and": "AND", "or": "OR", "&": "&", "|": "|", "^": "^",
           "like": "LIKE", "ilike": "ILIKE", "rlike": "RLIKE"}
_RENAMED = {"startsWith": "startswith", "endsWith": "endswith", "isNaN": "isnan"}


def column_sql(column: Any, qualifiers: dict[int, str] | None = None) -> str:
    """The SQL text of a Spark Connect Column.

    ``qualifiers`` maps a DataFrame's plan ids to the alias that names it in the statement, so
    ``source["id"]`` becomes ``s.id`` in a merge whose source is aliased ``s``.
    """
    expression = getattr(column, "_expr", None)
    if expression is None:
        raise ColumnNotExpressible(f"not a Column: {type(column).__name__}")
    return _expression_sql(expression, qualifiers or {})


def _expression_sql(e: Any, qualifiers: dict[int, str]) -> str:
    from pyspark.sql.connect import expressions as x  # lazy: pyspark is heavy (kernel start-up)

    def sql(child: Any) -> str:
        return _expression_sql(child, qualifiers)

    if isinstance(e, x.ColumnReference):
        plan = getattr(e, "_plan_id", None)
        name = str(e._unparsed_identifier)
        return f"{qualifiers[plan]}.{name}" if plan in qualifiers else name
    if isinstance(e, x.UnresolvedStar):
        target = getattr(e, "_unparsed_target", None)
        return f"{target.rstrip('*').rstrip('.')}.*" if target else "*"
    if isinstance(e, x.LiteralExpression):
        return _literal_sql(e._value, e._dataType)
    if isinstance(e, x.SQLExpression):
        return f"({e._expr})"
    if isinstance(e, x.ColumnAlias):
        return sql(e._child)  # an alias means nothing inside a condition or an assignment
    if isinstance(e, x.CastExpression):
        target = e._data_type if isinstance(e._data_type, str) else e._data_type.simpleString()
        return f"{'TRY_CAST' if e._eval_mode == 'try' else 'CAST'}({sql(e._expr)} AS {target})"
    if isinstance(e, x.CaseWhen):
        branches = " ".join(f"WHEN {sql(c)} THEN {sql(v)}" for c, v in e._branches)
        otherwise = f" ELSE {sql(e._else_value)}" if e._else_value is not None else ""
        return f"(CASE {branches}{otherwise} END)"
    if isinstance(e, x.UnresolvedExtractValue):
        return f"{sql(e._child)}[{sql(e._extraction)}]"
    if isinstance(e, x.UnresolvedNamedLambdaVariable):
        return ".".join(e._name_parts)
    if isinstance(e, x.LambdaFunction):
        return f"({', '.join(sql(v) for v in e._arguments)}) -> {sql(e._function)}"
    if isinstance(e, x.UnresolvedFunction):
        return _function_sql(str(e._name), [sql(a) for a in e._args], bool(e._is_distinct))
    if isinstance(e, x.CommonInlineUserDefinedFunction):
        raise ColumnNotExpressible(
            f"the Python UDF {e._function_name}(...) has no SQL form; register it (spark.udf.register) and call "
            "it by name in a SQL string")
    raise ColumnNotExpressible(f"a Column of kind {type(e).__name__} ({e}) has no SQL form here")


def _function_sql(name: str, args: list[str], distinct: bool) -> str:
    if name in _BINARY and len(args) == 2:
        return f"({args[0]} {_BINARY[name]} {args[1]})"
    unary = {"not": "NOT {}", "negative": "-{}", "~": "~{}", "isNull": "{} IS NULL", "isNotNull": "{} IS NOT NULL"}
    if name in unary and len(args) == 1:
        return "(" + unary[name].format(args[0]) + ")"
    if name == "in" and args:
        return f"({args[0]} IN ({', '.join(args[1:])}))"
    if not name.replace("_", "a").isalnum():
        raise ColumnNotExpressible(f"the operator {name!r} has no SQL form here")
    return f"{_RENAMED.get(name, name)}({'DISTINCT ' if distinct else ''}{', '.join(args)})"


def _literal_sql(value: Any, data_type: Any) -> str:
    from pyspark.sql import types as t  # lazy: pyspark is heavy (kernel start-up)

    if value is None:
        return "NULL" if isinstance(data_type, t.NullType) else f"CAST(NULL AS {data_type.simpleString()})"
    if isinstance(data_type, t.BooleanType):
        return "TRUE" if value else "FALSE"
    suffix = {t.ByteType: "Y", t.ShortType: "S", t.IntegerType: "", t.LongType: "L"}
    for kind, letter in suffix.items():
        if isinstance(data_type, kind):
            return f"{int(value)}{letter}"
    if isinstance(data_type, t.DecimalType):  # the literal's digits give its precision and scale, as in Spark
        return f"{format(value, 'f')}BD"
    if isinstance(data_type, t.FloatType | t.DoubleType):
        # A string cast is exact for every value, NaN and infinities included.
        text = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(float(value)), repr(float(value)))
        return f"CAST({sql_string(text)} AS {data_type.simpleString()})"
    if isinstance(data_type, t.StringType):
        return sql_string(str(value))
    if isinstance(data_type, t.BinaryType):
        return f"X'{bytes(value).hex()}'"
    if isinstance(data_type, t.DateType):
        return f"DATE'{t.DateType().fromInternal(value).isoformat()}'"
    if isinstance(data_type, t.TimestampType):  # microseconds since the epoch, UTC
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=value)
        return f"TIMESTAMP'{moment.strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"
    if isinstance(data_type, t.TimestampNTZType):
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value)
        return f"TIMESTAMP_NTZ'{moment.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(data_type, t.DayTimeIntervalType):
        sign, micros = ("-", -value) if value < 0 else ("", value)
        seconds, micros = divmod(micros, 1_000_000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        days, hours = divmod(hours, 24)
        return f"INTERVAL '{sign}{days} {hours:02}:{minutes:02}:{seconds:02}.{micros:06}' DAY TO SECOND"
    if isinstance(data_type, t.ArrayType):
        return f"array({', '.join(_literal_sql(v, data_type.elementType) for v in value)})"
    raise ColumnNotExpressible(f"a literal of type {data_type.simpleString()} has no SQL form here")


def _plan_ids(df: Any) -> list[int]:
    """The plan ids of a DataFrame and of the plans it is built on (its columns carry one of them)."""
    ids = []
    plan = getattr(df, "_plan", None)
    while plan is not None:
        if isinstance(getattr(plan, "_plan_id", None), int):
            ids.append(plan._plan_id)
        plan = getattr(plan, "_child", None)
    return ids


def _sql_text(value: Any, what: str, qualifiers: dict[int, str] | None = None) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "_expr"):
        try:
            return column_sql(value, qualifiers)
        except ColumnNotExpressible as exc:
            raise ColumnNotExpressible(f"{what}: {exc}; write it as a SQL string (e.g. \"t.id = s.id\")") from None
    raise NotebookRuntimeError(f"{what} must be a SQL string or a Column (got {type(value).__name__})")


def _assignments(mapping: dict[str, Any] | None, what: str, qualifiers: dict[int, str] | None = None) -> str:
    if not mapping:
        raise NotebookRuntimeError(f"{what} needs at least one column")
    return ", ".join(f"{col} = {_sql_text(expr, f'{what} value for {col}', qualifiers)}"
                     for col, expr in mapping.items())


class DeltaTable:
    """A Delta table by name or path, with Delta Lake's Python API (SQL underneath)."""

    def __init__(self, spark: Any, identifier: str, path: str | None, alias: str | None = None,
                 full_name: str | None = None) -> None:
        self._spark = spark
        self._identifier = identifier  # SQL identifier: `schema`.`table` or delta.`/path`
        self._path = path
        self._alias = alias
        self._full_name = full_name  # catalog.schema.table of a catalog table, None for a path

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def forName(cls, sparkSession: Any, tableOrViewName: str) -> DeltaTable:
        _ = sparkSession.table(tableOrViewName).schema  # fails clearly if there is no such table
        # The registry's name: against the current catalog and schema, as the engine resolved it.
        name = current().lakehouse.key(tableOrViewName)
        entry = _entry(name)
        return cls(sparkSession, sql_ident(name), entry.location if entry else None,
                   full_name=entry.full_name if entry else None)

    @classmethod
    def forPath(cls, sparkSession: Any, path: str) -> DeltaTable:
        local = _local(path)
        if not cls.isDeltaTable(sparkSession, path):
            raise NotebookRuntimeError(f"{path} is not a Delta table")
        return cls(sparkSession, "delta.`" + local.replace("`", "``") + "`", local)

    @classmethod
    def isDeltaTable(cls, sparkSession: Any, identifier: str) -> bool:
        return (Path(_local(identifier)) / "_delta_log").is_dir()

    # -- reading ----------------------------------------------------------------------------
    def toDF(self) -> Any:
        df = self._spark.sql(f"SELECT * FROM {self._identifier}")
        return df.alias(self._alias) if self._alias else df

    def alias(self, aliasName: str) -> DeltaTable:
        return DeltaTable(self._spark, self._identifier, self._path, aliasName, self._full_name)

    # -- the Delta statements: answered by nbflow from the Delta log on Sail (delta-rs, see
    # nbflow.runtime.delta_commands), by delta-spark itself on the JVM engine and by an external cluster.
    def history(self, limit: int | None = None) -> Any:
        """The table's commits, newest first: ``DESCRIBE HISTORY``."""
        return self._spark.sql(f"DESCRIBE HISTORY {self._identifier}" + (f" LIMIT {int(limit)}" if limit else ""))

    def detail(self) -> Any:
        """One row about the table: ``DESCRIBE DETAIL``."""
        return self._spark.sql(f"DESCRIBE DETAIL {self._identifier}")

    def restoreToVersion(self, version: int) -> Any:
        """A new commit that makes the table as it was at ``version``; the metrics of ``RESTORE``."""
        return self._spark.sql(f"RESTORE TABLE {self._identifier} TO VERSION AS OF {int(version)}")

    def restoreToTimestamp(self, timestamp: str) -> Any:
        """As :meth:`restoreToVersion`, to the last version committed at or before ``timestamp``."""
        return self._spark.sql(f"RESTORE TABLE {self._identifier} TO TIMESTAMP AS OF {sql_string(str(timestamp))}")

    def optimize(self) -> DeltaOptimizeBuilder:
        return DeltaOptimizeBuilder(self)

    def vacuum(self, retentionHours: float | None = None) -> Any:
        """Delete files that no version within the retention period needs (``VACUUM``; a retention
        under the table's, 7 days by default, needs the retention check turned off, as on Databricks)."""
        retain = "" if retentionHours is None else f" RETAIN {float(retentionHours)} HOURS"
        return self._spark.sql(f"VACUUM {self._identifier}{retain}")

    # -- changing ---------------------------------------------------------------------------
    def _target(self) -> str:
        return f"{self._identifier} AS {self._alias}" if self._alias else self._identifier

    def delete(self, condition: Any = None) -> None:
        where = f" WHERE {_sql_text(condition, 'condition')}" if condition is not None else ""
        self._spark.sql(f"DELETE FROM {self._target()}{where}").collect()

    def update(self, condition: Any = None, set: dict[str, Any] | None = None) -> None:
        where = f" WHERE {_sql_text(condition, 'condition')}" if condition is not None else ""
        self._spark.sql(f"UPDATE {self._target()} SET {_assignments(set, 'update')}{where}").collect()

    def merge(self, source: Any, condition: Any) -> DeltaMergeBuilder:
        return DeltaMergeBuilder(self, source, condition)


class DeltaOptimizeBuilder:
    """``DeltaTable.optimize()``: ``where(partition_filter)``, then ``executeCompaction()`` or
    ``executeZOrderBy(cols)``; each returns the ``OPTIMIZE`` result (path, metrics)."""

    def __init__(self, table: DeltaTable) -> None:
        self._table = table
        self._where: str | None = None

    def where(self, partitionFilter: str) -> DeltaOptimizeBuilder:
        self._where = partitionFilter
        return self

    def _run(self, zorder: list[str] | None) -> Any:
        table = self._table
        where = f" WHERE {self._where}" if self._where else ""
        order = f" ZORDER BY ({', '.join(sql_ident(c) for c in zorder)})" if zorder else ""
        return table._spark.sql(f"OPTIMIZE {table._identifier}{where}{order}")

    def executeCompaction(self) -> Any:
        return self._run(None)

    def executeZOrderBy(self, *cols: str | Iterable[str]) -> Any:
        names = [c for col in cols for c in ([col] if isinstance(col, str) else col)]
        if not names:
            raise NotebookRuntimeError("executeZOrderBy needs at least one column")
        return self._run(names)


class DeltaMergeBuilder:
    """``MERGE INTO``, clause by clause, as delta-spark's builder; ``execute()`` runs it.

    Column conditions and values may name the source by its alias (``F.col("s.id")``) or through
    the DataFrame (``source["id"]``): the latter is written with the source's alias.
    """

    def __init__(self, table: DeltaTable, source: Any, condition: Any) -> None:
        self._table = table
        self._source = source
        self._alias = _source_alias(source)
        self._qualifiers = dict.fromkeys(_plan_ids(source), self._alias)
        self._condition = _sql_text(condition, "merge condition", self._qualifiers)
        self._clauses: list[str] = []

    def _add(self, head: str, condition: Any, action: str) -> DeltaMergeBuilder:
        when = f" AND {_sql_text(condition, 'clause condition', self._qualifiers)}" if condition is not None else ""
        self._clauses.append(f"{head}{when} THEN {action}")
        return self

    def _set(self, mapping: dict[str, Any] | None, what: str) -> str:
        return _assignments(mapping, what, self._qualifiers)

    def whenMatchedUpdate(self, condition: Any = None, set: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, f"UPDATE SET {self._set(set, 'whenMatchedUpdate')}")

    def whenMatchedUpdateAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, "UPDATE SET *")

    def whenMatchedDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, "DELETE")

    def whenNotMatchedInsert(self, condition: Any = None, values: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        if not values:
            raise NotebookRuntimeError("whenNotMatchedInsert needs values")
        columns = ", ".join(values)
        exprs = ", ".join(_sql_text(v, f"insert value for {k}", self._qualifiers) for k, v in values.items())
        return self._add("WHEN NOT MATCHED", condition, f"INSERT ({columns}) VALUES ({exprs})")

    def whenNotMatchedInsertAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED", condition, "INSERT *")

    def whenNotMatchedBySourceUpdate(
        self, condition: Any = None, set: dict[str, Any] | None = None
    ) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED BY SOURCE", condition,
                         f"UPDATE SET {self._set(set, 'whenNotMatchedBySourceUpdate')}")

    def whenNotMatchedBySourceDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED BY SOURCE", condition, "DELETE")

    def execute(self) -> Any:
        if not self._clauses:
            raise NotebookRuntimeError("a merge needs at least one when... clause before execute()")
        spark = self._table._spark
        view = f"nbflow_merge_source_{uuid.uuid4().hex[:12]}"
        alias = self._alias
        self._source.createOrReplaceTempView(view)
        try:
            statement = (f"MERGE INTO {self._table._target()} USING {view} AS {alias} ON {self._condition} "
                         + " ".join(self._clauses))
            return spark.sql(statement)
        finally:
            spark.catalog.dropTempView(view)


def _source_alias(source: Any) -> str:
    """The merge source's own alias (``df.alias("s")``, possibly followed by more steps), which
    names it in the conditions as in delta-spark; ``source`` when it has none."""
    plan = getattr(source, "_plan", None)
    while plan is not None:
        if type(plan).__name__ == "SubqueryAlias":
            return str(plan._alias)
        plan = getattr(plan, "_child", None)
    return "source"


def _local(path: str) -> str:
    if path.startswith("file:"):
        return local_path(path)
    if path.startswith("dbfs:"):
        return str(current().dbutils.fs.local_path(path))
    return path


def _entry(name: str) -> TableEntry | None:
    """A table's registry entry (``name``: catalog.schema.table), after sharing this session's tables."""
    session = current()
    registry = Registry(session.context.project_dir)
    entry = registry.get(name)
    if entry is None:
        session.lakehouse._dirty = True  # created earlier in this very cell, by a path nbflow does not follow
        session.lakehouse.push()
        entry = registry.get(name)
    return entry
