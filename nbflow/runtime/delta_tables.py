"""``delta.tables.DeltaTable`` for engines without the Delta Lake Python API over Spark Connect.

Sail runs Delta tables and Delta SQL (``MERGE``, ``UPDATE``, ``DELETE``, ``VERSION AS OF``) but
not the Delta Connect relations behind delta-spark's ``DeltaTable``. This class offers the same
API built on that SQL, and on delta-rs (``deltalake``) for ``history()`` and ``detail()``. It is
installed as ``delta.tables`` in a kernel only when delta-spark is not installed.

Conditions and expressions are SQL strings (``"t.id = s.id"``, ``{"amount": "s.amount"}``), as in
Delta's own examples; Column objects cannot be turned back into SQL over Spark Connect, so they
are refused with a message saying so.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ..catalog import Registry, normalize
from ..errors import NotebookRuntimeError
from .lakehouse import _ident, local_path


def _sql_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    raise NotebookRuntimeError(
        f"{what} must be a SQL string here (got {type(value).__name__}): nbflow's DeltaTable builds SQL, "
        "and a Column cannot be turned back into SQL over Spark Connect; write e.g. \"t.id = s.id\""
    )


def _assignments(mapping: dict[str, Any] | None, what: str) -> str:
    if not mapping:
        raise NotebookRuntimeError(f"{what} needs at least one column")
    return ", ".join(f"{col} = {_sql_text(expr, f'{what} value for {col}')}" for col, expr in mapping.items())


class DeltaTable:
    """A Delta table by name or path, with Delta Lake's Python API (SQL underneath)."""

    def __init__(self, spark: Any, identifier: str, path: str | None, alias: str | None = None) -> None:
        self._spark = spark
        self._identifier = identifier  # SQL identifier: `schema`.`table` or delta.`/path`
        self._path = path
        self._alias = alias

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def forName(cls, sparkSession: Any, tableOrViewName: str) -> DeltaTable:
        name = normalize(tableOrViewName)
        _ = sparkSession.table(tableOrViewName).schema  # fails clearly if there is no such table
        return cls(sparkSession, _ident(name), _location(name))

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
        return DeltaTable(self._spark, self._identifier, self._path, aliasName)

    def history(self, limit: int | None = None) -> Any:
        """The table's commits, newest first (from the Delta log, read with delta-rs)."""
        import json

        import pandas as pd

        rows = []
        for commit in self._delta().history(limit):
            rows.append({
                "version": commit.get("version"),
                "timestamp": pd.to_datetime(commit.get("timestamp"), unit="ms"),
                "operation": commit.get("operation"),
                "operationParameters": json.dumps(commit.get("operationParameters") or {}),
                "engineInfo": commit.get("engineInfo") or commit.get("clientVersion"),
            })
        return self._spark.createDataFrame(pd.DataFrame(rows))

    def detail(self) -> Any:
        """One row: format, location, version, files, size and protocol (from delta-rs)."""
        import pandas as pd
        import pyarrow as pa

        table = self._delta()
        meta, protocol = table.metadata(), table.protocol()
        actions = pa.table(table.get_add_actions(flatten=True))
        row = {
            "format": "delta", "id": meta.id, "name": meta.name, "location": self._path,
            "createdAt": pd.to_datetime(meta.created_time, unit="ms"), "version": table.version(),
            "numFiles": actions.num_rows, "sizeInBytes": sum(actions.column("size_bytes").to_pylist()),
            "partitionColumns": list(meta.partition_columns),
            "minReaderVersion": protocol.min_reader_version, "minWriterVersion": protocol.min_writer_version,
        }
        return self._spark.createDataFrame(pd.DataFrame([row]))

    def _delta(self) -> Any:
        from deltalake import DeltaTable as RustDeltaTable

        if self._path is None:
            raise NotebookRuntimeError(f"the location of {self._identifier} is not known to nbflow's catalog")
        return RustDeltaTable(self._path)

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
        return DeltaMergeBuilder(self, source, _sql_text(condition, "merge condition"))


class DeltaMergeBuilder:
    """``MERGE INTO``, clause by clause, as delta-spark's builder; ``execute()`` runs it."""

    def __init__(self, table: DeltaTable, source: Any, condition: str) -> None:
        self._table = table
        self._source = source
        self._condition = condition
        self._clauses: list[str] = []

    def _add(self, head: str, condition: Any, action: str) -> DeltaMergeBuilder:
        when = f" AND {_sql_text(condition, 'clause condition')}" if condition is not None else ""
        self._clauses.append(f"{head}{when} THEN {action}")
        return self

    def whenMatchedUpdate(self, condition: Any = None, set: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, f"UPDATE SET {_assignments(set, 'whenMatchedUpdate')}")

    def whenMatchedUpdateAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, "UPDATE SET *")

    def whenMatchedDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN MATCHED", condition, "DELETE")

    def whenNotMatchedInsert(self, condition: Any = None, values: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        if not values:
            raise NotebookRuntimeError("whenNotMatchedInsert needs values")
        columns = ", ".join(values)
        exprs = ", ".join(_sql_text(v, f"insert value for {k}") for k, v in values.items())
        return self._add("WHEN NOT MATCHED", condition, f"INSERT ({columns}) VALUES ({exprs})")

    def whenNotMatchedInsertAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED", condition, "INSERT *")

    def whenNotMatchedBySourceUpdate(
        self, condition: Any = None, set: dict[str, Any] | None = None
    ) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED BY SOURCE", condition,
                         f"UPDATE SET {_assignments(set, 'whenNotMatchedBySourceUpdate')}")

    def whenNotMatchedBySourceDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("WHEN NOT MATCHED BY SOURCE", condition, "DELETE")

    def execute(self) -> Any:
        if not self._clauses:
            raise NotebookRuntimeError("a merge needs at least one when... clause before execute()")
        spark = self._table._spark
        view = f"nbflow_merge_source_{uuid.uuid4().hex[:12]}"
        alias = _source_alias(self._source)
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
        from . import current

        return str(current().dbutils.fs.local_path(path))
    return path


def _location(name: str) -> str | None:
    """Where a table's data is: registered tables by the registry, after sharing this session's."""
    from . import current

    session = current()
    registry = Registry(session.context.project_dir)
    entry = registry.get(name)
    if entry is None:
        session.lakehouse.push()  # created earlier in this very cell
        entry = registry.get(name)
    return entry.location if entry else None
