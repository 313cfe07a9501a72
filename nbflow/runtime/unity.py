"""Unity Catalog on the local engine: catalogs, schemas, volumes and three-level names.

nbflow's registry (:mod:`nbflow.catalog`) is the catalog of record; the engine only executes.
Each Unity Catalog catalog is served by one of the engine's own catalogs:

- on Sail, by a catalog of the same name when the server was started with it (every catalog in
  the registry at start, and ``main``); ``hive_metastore`` by Spark's ``spark_catalog``; a
  catalog created while the server runs by one of the spare catalogs Sail was started with
  (Sail cannot add catalogs at run time). Sail keeps catalogs per session, so which spare stands
  for which catalog is this session's own affair; the tables themselves are shared through the
  registry.
- on an engine without spare catalogs (Apache Spark's JVM server, an external endpoint), by
  ``spark_catalog`` for every catalog: names are resolved, but two catalogs' schemas share one
  namespace there.

Statements about catalogs, schemas and volumes are answered here, from the registry (the engine
learns what it needs); other statements go to the engine, with the catalog part of names
rewritten where the engine's catalog has another name. Databricks paths in a statement's path
positions (``LOCATION '...'``, ``delta.`...```, ``read_files('...')``) are mapped as Spark's
readers map them.

Imported inside kernels: standard library, nbflow.catalog and nbflow.errors only (pyspark
lazily).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import (
    DEFAULT_CATALOG,
    DEFAULT_SCHEMA,
    LEGACY_CATALOG,
    SPARE_CATALOG_PREFIX,
    SYSTEM_CATALOG,
    Registry,
    TableEntry,
    canonical_catalog,
    qualify,
    split_name,
)
from ..errors import CatalogObjectError
from .sql_text import Token, quote, strip_comments, tokenize, unquote_string

if TYPE_CHECKING:
    from .lakehouse import Lakehouse

ENGINE_LEGACY = "spark_catalog"
DEFAULT_CATALOG_ENV = "NBFLOW_DEFAULT_CATALOG"

@dataclass
class CatalogMap:
    """Which engine catalog serves each Unity Catalog catalog, for one session."""

    native: set[str]  # the engine's catalogs (lower case)
    spares: list[str] = field(default_factory=list)  # the engine's spare catalogs not yet used
    assigned: dict[str, str] = field(default_factory=dict)  # Unity Catalog name → spare

    @classmethod
    def from_engine(cls, names: list[str]) -> CatalogMap:
        lowered = {n.lower() for n in names}
        spares = sorted((n for n in lowered if n.startswith(SPARE_CATALOG_PREFIX)),
                        key=lambda n: int(n[len(SPARE_CATALOG_PREFIX):] or 0))
        return cls(native=lowered - set(spares), spares=spares)

    @property
    def collapsed(self) -> bool:
        """An engine with only Spark's own catalog: every catalog is served by it."""
        return not self.spares and not self.assigned and self.native <= {ENGINE_LEGACY, SYSTEM_CATALOG}

    def engine(self, catalog: str) -> str:
        """The engine catalog for the Unity Catalog catalog ``catalog`` (a spare is taken if needed)."""
        catalog = canonical_catalog(catalog)
        if catalog == LEGACY_CATALOG or self.collapsed:
            return ENGINE_LEGACY if catalog != SYSTEM_CATALOG or SYSTEM_CATALOG not in self.native else catalog
        if catalog in self.native:
            return catalog
        if catalog not in self.assigned:
            if not self.spares:
                raise CatalogObjectError(
                    "TOO_MANY_CATALOGS",
                    f"catalog '{catalog}': the local cluster was started before it existed and its spare catalogs "
                    "are all in use in this session; restart the cluster (nbflow cluster stop) to serve every "
                    "catalog directly")
            self.assigned[catalog] = self.spares.pop(0)
        return self.assigned[catalog]

    def uc(self, engine_catalog: str) -> str:
        """The Unity Catalog name of an engine catalog."""
        lowered = engine_catalog.lower()
        if lowered == ENGINE_LEGACY:
            return LEGACY_CATALOG
        for catalog, spare in self.assigned.items():
            if spare == lowered:
                return catalog
        return lowered


def rewrite(statement: str, names: set[str], resolve: Callable[[str], str | None], current_literal: str | None,
            map_path: Callable[[str], str] | None = None) -> str:
    """``statement`` with catalog names the engine knows otherwise replaced (``names`` are the
    candidates, ``resolve`` gives the engine's name or None), ``current_catalog()`` made a literal
    (``current_literal``, when the engine's name differs) and Databricks paths in path positions
    mapped with ``map_path``."""
    lowered = statement.lower()
    if (not any(name in lowered for name in names) and (current_literal is None or "current_catalog" not in lowered)
            and (map_path is None or not any(root in statement for root in _PATH_MARKS))):
        return statement
    tokens = tokenize(statement)
    significant = [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]
    position = {index: n for n, index in enumerate(significant)}

    def neighbour(index: int, step: int) -> Token | None:
        n = position[index] + step
        return tokens[significant[n]] if 0 <= n < len(significant) else None

    listing = _select_lists([tokens[i] for i in significant])

    for index in significant:
        token = tokens[index]
        before, after = neighbour(index, -1), neighbour(index, 1)
        name = token.name
        if (name in names and after is not None and after.text == "." and (before is None or before.text != ".")
                and (engine := resolve(name)) is not None):
            token.text = quote(engine)
        elif (name == "current_catalog" and token.kind == "word" and current_literal is not None
              and after is not None and after.text == "("):
            closing = neighbour(significant[position[index] + 1], 1)
            if closing is not None and closing.text == ")":
                token.text = "'" + current_literal.replace("'", "\\'") + "'"
                after.text = ""
                closing.text = ""
                # A select-list item keeps the engine's column name, as Databricks names it
                # (spark.sql("SELECT current_catalog()").first()["current_catalog()"]).
                if listing[position[index]] and _unnamed(neighbour(significant[position[index] + 2], 1)):
                    token.text += " AS `current_catalog()`"
        elif (map_path is not None and token.kind in ("string", "quoted")
              and _in_path_position(before, neighbour(index, -2), token)):
            inner = token.text[1:-1]
            mapped = map_path(inner)
            if mapped != inner:
                mark = token.text[0]
                token.text = mark + mapped.replace(mark, ("\\" + mark) if mark != "`" else "``") + mark
    return "".join(t.text for t in tokens)


# Keywords that end a query block's select list.
_AFTER_SELECT_LIST = frozenset({"from", "where", "group", "having", "order", "limit", "union", "intersect", "except",
                                "window", "qualify", "into", "sort", "cluster", "distribute"})


def _select_lists(significant: list[Token]) -> list[bool]:
    """For each token: whether it is an item of a select list, right after SELECT (or DISTINCT/ALL)
    or a comma, at the parenthesis depth of that SELECT (not inside a call or an IN list)."""
    listing: list[bool] = []
    open_select: list[bool] = [False]  # per depth: inside the select list of a SELECT at that depth
    previous: str | None = None
    for token in significant:
        word = token.text.lower() if token.kind == "word" else None
        listing.append(open_select[-1] and previous in ("select", "distinct", "all", ","))
        if token.text == "(":
            open_select.append(False)
        elif token.text == ")" and len(open_select) > 1:
            open_select.pop()
        elif word == "select":
            open_select[-1] = True
        elif word in _AFTER_SELECT_LIST:
            open_select[-1] = False
        previous = word if word is not None else token.text
    return listing


def _unnamed(following: Token | None) -> bool:
    """Whether a select-list item followed by ``following`` has no alias of its own."""
    return following is None or following.text in (",", ";", ")") or (
        following.kind == "word" and following.text.lower() in _AFTER_SELECT_LIST)


def name_chains(statement: str) -> list[list[str]]:
    """The dotted names in a statement (``a``, ``a.b``, ``a.b.c.d``), unquoted, outside strings
    and comments; ``IDENTIFIER('a.b')`` counts as a name. Keywords are included: callers look
    the candidates up in the registry."""
    chains: list[list[str]] = []
    current: list[str] = []
    expect_part = True
    significant = [t for t in tokenize(statement) if t.kind not in ("space", "comment")]
    for n, token in enumerate(significant):
        name = token.name if token.kind == "word" else (token.text[1:-1].replace("``", "`") if token.kind == "quoted"
                                                         else None)
        if name is not None and expect_part:
            current.append(name)
            expect_part = False
        elif token.text == "." and current and not expect_part:
            expect_part = True
        else:
            if current:
                chains.append(current)
            current, expect_part = [], True
            if (token.kind == "string" and n >= 2 and significant[n - 1].text == "("
                    and significant[n - 2].name == "identifier"):
                with contextlib.suppress(CatalogObjectError):
                    chains.append(split_name(unquote_string(token.text)))
            if name is not None:
                current, expect_part = [name], False
    if current:
        chains.append(current)
    return chains


# A path in a path position is Databricks': dbfs:/x, /Volumes/..., /dbfs/..., /Workspace/... and
# any other root-relative /x (DBFS, as Spark's readers and writers map it: the same folder either way).
_PATH_ROOTS = ("dbfs:", "/")
_PATH_MARKS = ("dbfs:", "'/", '"/', "`/")  # a statement without these has no path to map


def _in_path_position(before: Token | None, function: Token | None, token: Token) -> bool:
    if token.kind == "quoted":  # format.`path`
        return before is not None and before.text == "." and token.text[1:].startswith(_PATH_ROOTS)
    if before is None or not token.text[1:].startswith(_PATH_ROOTS):
        return False
    # LOCATION 'p', COPY INTO t FROM 'p', OPTIONS (path 'p'), read_files('p', ...)
    if before.name in ("location", "from", "path"):
        return True
    return before.text == "(" and function is not None and function.name in _PATH_FUNCTIONS


_PATH_FUNCTIONS = ("read_files", "cloud_files")


# -- statements answered from the registry ---------------------------------------------------
_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|[\w$]+))*"
_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_I = re.IGNORECASE | re.DOTALL


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text, _I)


STATEMENTS: dict[str, re.Pattern[str]] = {
    "create_catalog": _pattern(rf"CREATE\s+CATALOG\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})(?P<rest>.*)"),
    "drop_catalog": _pattern(rf"DROP\s+CATALOG\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{_NAME})"
                             r"\s*(?P<mode>CASCADE|RESTRICT)?"),
    "use_catalog": _pattern(rf"(?:USE|SET)\s+CATALOG\s+(?P<name>{_NAME}|{_STRING})"),
    "use_schema": _pattern(rf"USE\s+(?:(?:SCHEMA|DATABASE|NAMESPACE)\s+)?(?P<name>{_NAME}|{_STRING})"),
    "show_catalogs": _pattern(rf"SHOW\s+CATALOGS(?:\s+(?:LIKE\s+)?(?P<pat>{_STRING}))?"),
    "show_schemas": _pattern(rf"SHOW\s+(?:SCHEMAS|DATABASES|NAMESPACES)(?:\s+(?:IN|FROM)\s+(?P<name>{_NAME}))?"
                             rf"(?:\s+(?:LIKE\s+)?(?P<pat>{_STRING}))?"),
    "create_schema": _pattern(rf"CREATE\s+(?:SCHEMA|DATABASE|NAMESPACE)\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?"
                              rf"(?P<name>{_NAME})(?P<rest>.*)"),
    "drop_schema": _pattern(rf"DROP\s+(?:SCHEMA|DATABASE|NAMESPACE)\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{_NAME})"
                            r"\s*(?P<mode>CASCADE|RESTRICT)?"),
    "create_volume": _pattern(rf"CREATE\s+(?P<ext>EXTERNAL\s+)?VOLUME\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?"
                              rf"(?P<name>{_NAME})(?P<rest>.*)"),
    "drop_volume": _pattern(rf"DROP\s+VOLUME\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{_NAME})"),
    "show_volumes": _pattern(rf"SHOW\s+VOLUMES(?:\s+(?:IN|FROM)\s+(?P<name>{_NAME}))?"
                             rf"(?:\s+(?:LIKE\s+)?(?P<pat>{_STRING}))?"),
    "describe_volume": _pattern(rf"(?:DESC|DESCRIBE)\s+VOLUME\s+(?P<name>{_NAME})"),
    "describe_catalog": _pattern(rf"(?:DESC|DESCRIBE)\s+CATALOG\s+(?:EXTENDED\s+)?(?P<name>{_NAME})"),
}


def classify(statement: str) -> tuple[str, re.Match[str]] | None:
    """Which registry statement this is (and its parts), or None for the engine's statements."""
    text = strip_comments(statement)
    head = text[:12].upper()
    if not head.startswith(("CREATE", "DROP", "USE", "SET", "SHOW", "DESC")):
        return None
    for kind, pattern in STATEMENTS.items():
        match = pattern.fullmatch(text)
        if match is not None:
            return kind, match
    return None


def clause(rest: str, keyword: str) -> str | None:
    """The string after ``keyword`` in a statement's tail (``COMMENT 'x'``, ``LOCATION 'y'``)."""
    match = re.search(rf"\b{keyword}\s+({_STRING})", rest, _I)
    return unquote_string(match[1]) if match else None


def like(names: Iterator[str] | list[str], pattern: str | None) -> list[str]:
    """Databricks' ``LIKE`` for SHOW: ``*`` any characters, ``|`` alternatives, case-insensitive."""
    if pattern is None:
        return sorted(names)
    choices = [p.strip().lower() for p in pattern.split("|")]
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n.lower(), c) for c in choices))


def _pat(match: re.Match[str]) -> str | None:
    return unquote_string(match["pat"]) if match["pat"] else None


def schema_parts(name: str, catalog: str) -> tuple[str, str]:
    parts = qualify(name, catalog, levels=2)
    return parts[0], parts[1]


def one_name(text: str) -> str:
    """A name given as an identifier or a string (``USE CATALOG 'x'``); a one-part identifier
    loses its backticks (```my-catalog``` → ``my-catalog``), a dotted one keeps them."""
    if text[:1] in "'\"":
        return unquote_string(text)
    parts = split_name(text)
    return parts[0] if len(parts) == 1 else text


def object_error(exc: CatalogObjectError) -> Exception:
    """Spark's AnalysisException for a registry error, as a notebook on Databricks would catch it."""
    from pyspark.errors.exceptions.connect import AnalysisException  # lazy: pyspark is heavy (kernel start-up)

    return AnalysisException(message=str(exc), errorClass=exc.error_class, messageParameters={})



class UnityCatalog:
    """One session's Unity Catalog: its current catalog and schema, the statements nbflow answers
    from the registry, and the names it hands the engine."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self._lakehouse = lakehouse
        self.catalog = DEFAULT_CATALOG
        self.schema = DEFAULT_SCHEMA

    @property
    def _registry(self) -> Registry:
        return self._lakehouse._registry

    @property
    def _map(self) -> CatalogMap:
        return self._lakehouse.catalogs

    def start(self) -> None:
        """On a freshly attached session: the current catalog is the default one (``main``, or
        the catalog ``NBFLOW_DEFAULT_CATALOG`` names, e.g. ``hive_metastore`` for a project whose
        tables were written before catalogs existed)."""
        catalog = canonical_catalog(os.environ.get(DEFAULT_CATALOG_ENV) or DEFAULT_CATALOG)
        if catalog not in self._registry.catalogs():
            raise CatalogObjectError(
                "NO_SUCH_CATALOG_EXCEPTION",
                f"Catalog '{catalog}' was not found: {DEFAULT_CATALOG_ENV} names it as the default catalog "
                "(create it first, or unset the variable)")
        self.catalog, self.schema = catalog, DEFAULT_SCHEMA
        self._engine_catalog_switch(self.engine_catalog(self.catalog), quiet=True)

    def _engine_catalog_switch(self, engine: str, quiet: bool = False) -> None:
        # An engine with one catalog is always in it (and Apache Spark's parser has no USE CATALOG).
        if not self._map.collapsed:
            self._lakehouse._sql(f"USE CATALOG {quote(engine)}", quiet=quiet)

    # -- names ------------------------------------------------------------------------------
    def engine_catalog(self, catalog: str) -> str:
        """The engine catalog serving ``catalog``; a catalog the registry does not know is given
        to the engine as written (it reports it)."""
        catalog = canonical_catalog(catalog)
        if catalog not in self._registry.catalogs():
            return catalog
        return self._map.engine(catalog)

    def served(self) -> set[str]:
        """The catalogs this session has on its engine (others are attached on first use)."""
        registered = set(self._registry.catalogs())
        if self._map.collapsed:
            return registered
        return {c for c in registered if c in self._map.native or c in self._map.assigned} | {LEGACY_CATALOG}

    def served_engines(self) -> list[tuple[str, str]]:
        """``(catalog, engine catalog)`` for each engine catalog in use, once each."""
        if self._map.collapsed:
            return [(self.catalog, ENGINE_LEGACY)]
        return sorted({(c, self._map.engine(c)) for c in self.served() if c != SYSTEM_CATALOG})

    def owner(self, catalog: str, schema: str, table: str) -> str:
        """The registry name of the engine's table ``schema.table`` listed under ``catalog``."""
        if self._map.collapsed:
            # One engine catalog for all: a table is the catalog's that registered it, else the current one's.
            for key in self._lakehouse._known:
                if key.endswith(f".{schema}.{table}"):
                    return key
        return f"{catalog}.{schema}.{table}"

    def others(self, catalog: str, schema: str) -> set[str]:
        """On an engine with one catalog: the tables of the schema ``schema`` of other catalogs
        (the engine keeps them in its one schema of that name; Unity Catalog keeps them apart).
        Empty on an engine with a catalog for each."""
        if not self._map.collapsed:
            return set()
        registered = self._registry.tables()
        return {key.rsplit(".", 1)[1] for key in registered
                if key.split(".", 1)[1].rsplit(".", 1)[0] == schema and not key.startswith(catalog + ".")
                and f"{catalog}.{key.split('.', 1)[1]}" not in registered}

    def check_distinct(self, key: str) -> None:
        """Refuse to create ``key`` (catalog.schema.table) where the engine serves every catalog
        with one: the same schema and table of another catalog would be the same engine table,
        and writing it would overwrite that catalog's data."""
        if not self._map.collapsed:
            return
        rest = key.split(".", 1)[1]
        taken = [k for k in self._registry.tables() if k.split(".", 1)[1] == rest and k != key]
        if taken:
            raise CatalogObjectError(
                "TABLE_OR_VIEW_ALREADY_EXISTS",
                f"Cannot create table {key}: on this engine one catalog serves every catalog, and {taken[0]} "
                "is the same engine table (use another schema or table name, or the sail engine)")

    def to_engine(self, statement: str) -> str:
        """The statement as the engine must see it (see :func:`rewrite`)."""
        registered = self._registry.catalogs()
        names = {c for c in registered if self._map.collapsed or c not in self._map.native} | {LEGACY_CATALOG}

        def resolve(name: str) -> str | None:
            engine = self.engine_catalog(name)
            return engine if engine != name else None

        current = self.engine_catalog(self.catalog)
        return rewrite(statement, names, resolve, self.catalog if current != self.catalog else None,
                       self._lakehouse.spark_path)

    # -- statements answered from the registry ----------------------------------------------
    def answer(self, statement: str) -> Any | None:
        """The result of a catalog, schema or volume statement; None for the engine's statements."""
        found = classify(statement)
        if found is None:
            return None
        kind, match = found
        try:
            handler: Callable[[re.Match[str]], Any] = getattr(self, "_" + kind)
            return handler(match)
        except CatalogObjectError as exc:
            raise object_error(exc) from None

    def _empty(self) -> Any:
        from pyspark.sql.types import StructType  # lazy: pyspark is heavy (kernel start-up)

        return self._lakehouse.spark().createDataFrame([], StructType([]))

    def _rows(self, schema: str, rows: list[tuple[Any, ...]]) -> Any:
        return self._lakehouse.spark().createDataFrame(rows, schema)

    def _create_catalog(self, match: re.Match[str]) -> Any:
        name = one_name(match["name"])
        self._registry.create_catalog(name, clause(match["rest"], "COMMENT") or "", bool(match["ine"]))
        self.engine_catalog(name)  # a spare now, if the engine was started without it
        return self._empty()

    def _drop_catalog(self, match: re.Match[str]) -> Any:
        catalog = canonical_catalog(one_name(match["name"]))
        dropped = self._registry.drop_catalog(catalog, bool(match["ie"]), (match["mode"] or "").upper() == "CASCADE")
        self._dropped(dropped)
        self._lakehouse.follow_volumes()  # its volumes went with it
        if self.catalog == catalog:
            self._use(DEFAULT_CATALOG, DEFAULT_SCHEMA)
        return self._empty()

    def _use_catalog(self, match: re.Match[str]) -> Any:
        catalog = canonical_catalog(one_name(match["name"]))
        if catalog not in self._registry.catalogs():
            raise CatalogObjectError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.")
        self._use(catalog, DEFAULT_SCHEMA)
        return self._empty()

    def _use(self, catalog: str, schema: str) -> None:
        full = f"{catalog}.{schema}"
        if full not in self._registry.schemas():
            raise CatalogObjectError("SCHEMA_NOT_FOUND", f"The schema `{catalog}`.`{schema}` cannot be found.")
        engine = self.engine_catalog(catalog)
        self._lakehouse._ensure_schema(full)
        self._engine_catalog_switch(engine)
        self._lakehouse._sql(f"USE SCHEMA {quote(schema)}")
        self.catalog, self.schema = catalog, schema

    def _use_schema(self, match: re.Match[str]) -> Any:
        catalog, schema = schema_parts(one_name(match["name"]), self.catalog)
        self._use(catalog, schema)
        return self._empty()

    def _show_catalogs(self, match: re.Match[str]) -> Any:
        return self._rows("catalog string", [(c,) for c in like(list(self._registry.catalogs()), _pat(match))])

    def _show_schemas(self, match: re.Match[str]) -> Any:
        catalog = canonical_catalog(one_name(match["name"])) if match["name"] else self.catalog
        if catalog not in self._registry.catalogs():
            raise CatalogObjectError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.")
        schemas = [s.split(".", 1)[1] for s in self._registry.schemas() if s.split(".", 1)[0] == catalog]
        return self._rows("databaseName string", [(s,) for s in like(schemas, _pat(match))])

    def _create_schema(self, match: re.Match[str]) -> Any:
        catalog, schema = schema_parts(one_name(match["name"]), self.catalog)
        self._registry.create_schema(f"{catalog}.{schema}", clause(match["rest"], "COMMENT") or "",
                                     bool(match["ine"]))
        self.engine_catalog(catalog)
        self._lakehouse._ensure_schema(f"{catalog}.{schema}")
        return self._empty()

    def _drop_schema(self, match: re.Match[str]) -> Any:
        catalog, schema = schema_parts(one_name(match["name"]), self.catalog)
        dropped = self._registry.drop_schema(f"{catalog}.{schema}", bool(match["ie"]),
                                             (match["mode"] or "").upper() == "CASCADE")
        self._dropped(dropped)
        self._lakehouse.follow_volumes()  # its volumes went with it
        if schema != DEFAULT_SCHEMA:
            self._lakehouse._sql(f"DROP SCHEMA IF EXISTS {quote(self.engine_catalog(catalog))}.{quote(schema)} CASCADE",
                                 quiet=True)
            self._lakehouse._schemas.discard(f"{catalog}.{schema}")
        if (self.catalog, self.schema) == (catalog, schema):
            self._use(catalog, DEFAULT_SCHEMA)
        return self._empty()

    def _dropped(self, tables: list[TableEntry]) -> None:
        """Tables the registry dropped with their catalog or schema: gone from this session too."""
        for entry in tables:
            self._lakehouse._sql(f"DROP TABLE IF EXISTS {self._lakehouse.engine_key(entry.name)}", quiet=True)
            self._lakehouse._known.pop(entry.name, None)
            self._lakehouse._created.discard(entry.name)
            if entry.managed:
                self._lakehouse._remove_data(entry)

    def _create_volume(self, match: re.Match[str]) -> Any:
        location = clause(match["rest"], "LOCATION")
        name = one_name(match["name"])
        if match["ext"] and location is None:
            raise CatalogObjectError("INVALID_PARAMETER_VALUE", f"CREATE EXTERNAL VOLUME {name} needs a LOCATION")
        if location is not None:
            location = self._lakehouse.local_location(location)
        self._registry.create_volume(name, location, clause(match["rest"], "COMMENT") or "", bool(match["ine"]),
                                     self.catalog, self.schema)
        self._lakehouse.follow_volumes()  # writable at /Volumes from the next statement on
        return self._empty()

    def _drop_volume(self, match: re.Match[str]) -> Any:
        self._registry.drop_volume(one_name(match["name"]), bool(match["ie"]), self.catalog, self.schema)
        self._lakehouse.follow_volumes()
        return self._empty()

    def _show_volumes(self, match: re.Match[str]) -> Any:
        catalog, schema = schema_parts(one_name(match["name"]), self.catalog) if match["name"] else (
            self.catalog, self.schema)
        if f"{catalog}.{schema}" not in self._registry.schemas():
            raise CatalogObjectError("SCHEMA_NOT_FOUND", f"The schema `{catalog}`.`{schema}` cannot be found.")
        names = [v.split(".")[2] for v in self._registry.volumes() if v.startswith(f"{catalog}.{schema}.")]
        return self._rows("database string, volume_name string", [(schema, v) for v in like(names, _pat(match))])

    def _describe_volume(self, match: re.Match[str]) -> Any:
        full = ".".join(qualify(one_name(match["name"]), self.catalog, self.schema))
        volume = self._registry.volumes().get(full)
        if volume is None:
            raise CatalogObjectError("VOLUME_NOT_FOUND", f"Volume '{full}' does not exist.")
        catalog, schema, name = full.split(".")
        return self._rows(
            "name string, catalog string, database string, owner string, storage_location string, "
            "volume_type string, comment string, created_at string",
            [(name, catalog, schema, "nbflow", volume.location, "MANAGED" if volume.managed else "EXTERNAL",
              volume.comment or None, volume.created_at)])

    def _describe_catalog(self, match: re.Match[str]) -> Any:
        catalog = canonical_catalog(one_name(match["name"]))
        facts = self._registry.catalogs().get(catalog)
        if facts is None:
            raise CatalogObjectError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.")
        return self._rows("info_name string, info_value string",
                          [("Catalog Name", catalog), ("Comment", str(facts.get("comment") or "")),
                           ("Owner", "nbflow")])


_catalog_api_patched = False


def patch_catalog_api(lakehouse_of: Callable[[Any], Lakehouse | None]) -> None:
    """``spark.catalog`` in Unity Catalog's terms: current catalog and schema as the notebook set
    them, catalogs and schemas from the registry, table names with the engine's catalog names.

    Patched on the Spark Connect class once per kernel; a session nbflow did not prepare behaves
    as before."""
    global _catalog_api_patched
    if _catalog_api_patched:
        return
    from pyspark.sql.catalog import CatalogMetadata, Database, Table  # lazy: pyspark is heavy (kernel start-up)
    from pyspark.sql.connect.catalog import Catalog  # lazy: pyspark is heavy (kernel start-up)

    original = {name: getattr(Catalog, name) for name in (
        "currentCatalog", "setCurrentCatalog", "listCatalogs", "currentDatabase", "setCurrentDatabase",
        "listDatabases", "getDatabase", "databaseExists", "listTables", "getTable", "tableExists", "listColumns")}

    def routed(name: str, ours: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            lakehouse = lakehouse_of(self._sparkSession)
            if lakehouse is None:
                return original[name](self, *args, **kwargs)
            lakehouse.spark()
            lakehouse.pull()
            try:
                return ours(lakehouse, self, *args, **kwargs)
            except CatalogObjectError as exc:
                raise object_error(exc) from None
        method.__name__ = name
        method.__doc__ = original[name].__doc__
        return method

    def table_name(lakehouse: Lakehouse, table: str, db: str | None) -> str:
        name = f"{db}.{table}" if db else table
        lakehouse.need([lakehouse.key(name)])
        return lakehouse.engine_table(name)

    def schema_of(lakehouse: Lakehouse, db: str | None) -> tuple[str, str]:
        return schema_parts(db, lakehouse.unity.catalog) if db else (lakehouse.unity.catalog, lakehouse.unity.schema)

    def uc_table(lakehouse: Lakehouse, table: Any, asked: str) -> Any:
        # On an engine with one catalog, its name stands for every catalog: the table is in the
        # catalog the notebook asked about (``asked``), not in hive_metastore.
        catalog = table.catalog
        if catalog:
            catalog = asked if lakehouse.catalogs.collapsed else lakehouse.catalogs.uc(catalog)
        return Table(table.name, catalog, table.namespace, table.description, table.tableType, table.isTemporary)

    def list_catalogs(lakehouse: Lakehouse, _self: Any, pattern: str | None = None) -> list[Any]:
        catalogs = lakehouse._registry.catalogs()
        return [CatalogMetadata(name, catalogs[name].get("comment") or None)
                for name in like(list(catalogs), pattern)]

    def list_databases(lakehouse: Lakehouse, _self: Any, pattern: str | None = None) -> list[Any]:
        catalog = lakehouse.unity.catalog
        schemas = [s.split(".", 1)[1] for s in lakehouse._registry.schemas() if s.split(".", 1)[0] == catalog]
        return [Database(s, catalog, None, "") for s in like(schemas, pattern)]

    def get_database(lakehouse: Lakehouse, _self: Any, db: str) -> Any:
        catalog, schema = schema_of(lakehouse, db)
        if f"{catalog}.{schema}" not in lakehouse._registry.schemas():
            raise CatalogObjectError("SCHEMA_NOT_FOUND", f"The schema `{catalog}`.`{schema}` cannot be found.")
        return Database(schema, catalog, None, "")

    def list_tables(lakehouse: Lakehouse, self: Any, dbName: str | None = None, pattern: str | None = None) -> Any:
        catalog, schema = schema_of(lakehouse, dbName)
        lakehouse.need_schema(f"{catalog}.{schema}")
        engine = f"{quote(lakehouse.unity.engine_catalog(catalog))}.{quote(schema)}"
        others = lakehouse.unity.others(catalog, schema)  # another catalog's, on an engine with one
        return [uc_table(lakehouse, t, catalog) for t in original["listTables"](self, engine, pattern)
                if t.isTemporary or str(t.name).lower() not in others]

    def use(statement: str) -> Callable[..., Any]:
        return lambda lakehouse, _self, name: lakehouse.spark().sql(f"{statement} {quote(name)}") and None

    patches: dict[str, Callable[..., Any]] = {
        "currentCatalog": lambda lakehouse, _self: lakehouse.unity.catalog,
        "setCurrentCatalog": use("USE CATALOG"),
        "listCatalogs": list_catalogs,
        "currentDatabase": lambda lakehouse, _self: lakehouse.unity.schema,
        "setCurrentDatabase": use("USE SCHEMA"),
        "listDatabases": list_databases,
        "getDatabase": get_database,
        "databaseExists": lambda lakehouse, _self, dbName: (
            ".".join(schema_of(lakehouse, dbName)) in lakehouse._registry.schemas()),
        "listTables": list_tables,
        "getTable": lambda lakehouse, self, tableName: uc_table(
            lakehouse, original["getTable"](self, table_name(lakehouse, tableName, None)),
            lakehouse.key(tableName).split(".", 1)[0]),
        "tableExists": lambda lakehouse, self, tableName, dbName=None: original["tableExists"](
            self, table_name(lakehouse, tableName, dbName)),
        "listColumns": lambda lakehouse, self, tableName, dbName=None: original["listColumns"](
            self, table_name(lakehouse, tableName, dbName)),
    }
    for name, ours in patches.items():
        setattr(Catalog, name, routed(name, ours))
    _catalog_api_patched = True
