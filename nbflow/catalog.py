"""The project's catalog of record: catalogs, schemas, volumes and tables, by Unity Catalog names.

Databricks notebooks on one cluster share one metastore: a table written by one notebook is
visible by name (``catalog.schema.table``) to every other. Sail, the engine that runs Delta here, keeps a catalog per
Spark Connect session, and Apache Spark's server forgets its in-memory catalog on restart. So
nbflow keeps the project's catalog itself, in ``.nbflow/catalog/tables.json``: every kernel
registers the tables its session creates and attaches the tables others registered (see
:mod:`nbflow.runtime.lakehouse`). The data stays in ordinary Delta (or Parquet) folders that
any Delta reader opens.

Why not Sail's Unity Catalog provider: tried with a local UC REST endpoint, Sail then creates
"catalog-managed" Delta tables (reader feature ``catalogManaged``) whose commits go through the
catalog's commit API, which delta-rs and older Delta readers cannot open.

Names are three-level, as under Unity Catalog: ``main`` is the current catalog of a new session,
``hive_metastore`` (alias ``spark_catalog``) the legacy one, ``system`` read-only; a two-level
name resolves against the current catalog. Registries written before catalogs (format 1 and 2,
``schema.table`` keys) are read as ``hive_metastore`` tables and rewritten on the next change.
A managed volume ``c.s.v`` is the folder ``.nbflow/volumes/c/s/v``.

The file carries a format version and a checksum of its contents, and a good copy is kept
beside it (``tables.json.bak``, written with every change): a damaged or hand-emptied file is
reported by path, never read as "no tables" (which would silently forget every table), and :meth:`Registry.rebuild`
recovers the catalog from that copy and from the Delta folders in the warehouse.

Creating a table is one atomic act across sessions and processes: :meth:`Registry.claim` holds a
per-name lock while a session looks for the name, creates the table and registers it, so a
notebook that loses the race sees the winner's table instead of writing a private copy.

Imported inside kernels: standard library and nbflow.errors only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import CatalogBusy, CatalogDamaged, CatalogObjectError
from .project import catalog_dir, catalog_file, volumes_root

# Unity Catalog's names, as a new workspace has them: `main` is the current catalog of a new
# session; `hive_metastore` is the legacy metastore, which Spark calls `spark_catalog` (tables of
# registries written before catalogs existed belong to it); `system` is read-only.
DEFAULT_CATALOG = "main"
LEGACY_CATALOG = "hive_metastore"
SYSTEM_CATALOG = "system"
CATALOG_ALIASES = {"spark_catalog": LEGACY_CATALOG}
BUILTIN_CATALOGS = {
    DEFAULT_CATALOG: "the workspace's default catalog",
    LEGACY_CATALOG: "the legacy Hive metastore (spark_catalog)",
    SYSTEM_CATALOG: "system tables (read-only)",
}
DEFAULT_SCHEMA = "default"
# Engines that cannot add a catalog while they run (Sail) start with spare catalogs; a catalog
# created meanwhile is served by one of them until the engine restarts (nbflow.runtime.unity).
SPARE_CATALOG_PREFIX = "nbflow_spare_"
SPARE_CATALOGS = 16
PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
FORMAT_VERSION = 3
# How long a session waits for another to finish creating the same table (a CTAS can be long;
# a claim is let go when its holder ends, even by a crash: it is a file lock).
CLAIM_TIMEOUT_S = 600.0
_ENTRY_FIELDS = ("name", "location", "format", "managed", "updated_at")
_VOLUME_FIELDS = ("name", "location", "managed", "comment", "created_at")
_SECTIONS = ("catalogs", "schemas", "volumes", "tables")
_SAIL_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PART = re.compile(r"\s*(?:`((?:[^`]|``)*)`|([^.`\s]+))\s*(?:\.|$)")


@dataclass
class TableEntry:
    name: str  # catalog.schema.table, lower case, as Spark resolves unquoted names
    location: str  # absolute path of the table's folder
    format: str  # "delta", "parquet", ...
    managed: bool  # dropping the table removes its data
    updated_at: str

    @property
    def catalog(self) -> str:
        return split_name(self.name)[0]

    @property
    def schema(self) -> str:
        return split_name(self.name)[1]

    @property
    def table(self) -> str:
        return split_name(self.name)[2]

    @property
    def full_name(self) -> str:
        return self.name


@dataclass
class VolumeEntry:
    name: str  # catalog.schema.volume
    location: str  # the folder /Volumes/catalog/schema/volume stands for
    managed: bool  # a managed volume's files go with it when it is dropped
    comment: str
    created_at: str


def split_name(name: str) -> list[str]:
    """The parts of a dotted name (``a.b.c``, with `back.ticked` parts), as written."""
    parts: list[str] = []
    position = 0
    text = name.strip()
    while position < len(text):
        match = _PART.match(text, position)
        if match is None or match.end() == position:
            raise CatalogObjectError("INVALID_IDENTIFIER", f"{name!r} is not a valid name")
        parts.append(match[1].replace("``", "`") if match[1] is not None else match[2])
        position = match.end()
    if not parts or text.endswith("."):
        raise CatalogObjectError("INVALID_IDENTIFIER", f"{name!r} is not a valid name")
    return parts


def canonical_catalog(name: str) -> str:
    """A catalog's name as the registry keeps it: lower case, ``spark_catalog`` → ``hive_metastore``."""
    lowered = name.lower()
    return CATALOG_ALIASES.get(lowered, lowered)


def qualify(name: str, catalog: str = DEFAULT_CATALOG, schema: str = DEFAULT_SCHEMA, levels: int = 3) -> list[str]:
    """``name`` completed to ``levels`` parts from the current catalog and schema, lower case.

    For a table (3 levels): ``t`` → current catalog and schema; ``s.t`` → current catalog, as
    Databricks resolves two-level names under Unity Catalog. For a schema (2 levels): ``s`` →
    current catalog.
    """
    parts = [p.lower() for p in split_name(name)]
    if len(parts) > levels:
        raise CatalogObjectError("INVALID_IDENTIFIER", f"{name!r} has more than {levels} parts")
    current = [catalog.lower(), schema.lower()][: levels - 1]
    parts = current[: levels - len(parts)] + parts
    parts[0] = canonical_catalog(parts[0])
    return parts


def normalize(name: str, catalog: str = DEFAULT_CATALOG, schema: str = DEFAULT_SCHEMA) -> str:
    """``t``, ``schema.t`` or ``catalog.schema.t`` → ``catalog.schema.t`` (lower case, aliases resolved)."""
    return ".".join(qualify(name, catalog, schema))


@dataclass
class _Contents:
    """The registry's four sections, as changed under the lock."""

    catalogs: dict[str, dict[str, Any]]
    schemas: dict[str, dict[str, Any]]
    volumes: dict[str, VolumeEntry]
    tables: dict[str, TableEntry]

    def as_json(self) -> dict[str, Any]:
        return {"catalogs": dict(sorted(self.catalogs.items())), "schemas": dict(sorted(self.schemas.items())),
                "volumes": {n: asdict(v) for n, v in sorted(self.volumes.items())},
                "tables": {n: asdict(t) for n, t in sorted(self.tables.items())}}


class Registry:
    """The project's catalog of record: a JSON file changed under an exclusive file lock.

    It holds the catalogs and schemas users created (the built-in catalogs, and each catalog's
    ``default`` schema, are always there), the volumes and the tables, all by their three-level
    names.
    """

    def __init__(self, project: str | Path) -> None:
        self.project = Path(project)
        self.folder = catalog_dir(self.project)
        self.path = catalog_file(self.project)
        self.backup = self.path.with_name(self.path.name + ".bak")
        self.volumes_root = volumes_root(self.project)
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def _read(self) -> dict[str, Any]:
        # Sessions look before every statement: an unchanged file (every write is a rename to a
        # new file, so its identity and time change) is not read, parsed and checked again.
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._damaged(f"cannot be read ({exc})") from exc
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise self._damaged(f"cannot be read ({exc})") from exc
        data = self._check(text)
        self._cache = (key, data)
        return data

    def _check(self, text: str) -> dict[str, Any]:
        """The parsed file in the current format (older formats are read and converted), or
        :class:`CatalogDamaged` saying what is wrong with it."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self._damaged(f"is not valid JSON ({str(exc)[:120]})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
            raise self._damaged("has no tables section")
        version = data.get("version")
        if version == FORMAT_VERSION:
            if any(not isinstance(data.get(section), dict) for section in _SECTIONS):
                raise self._damaged("lacks one of its sections (" + ", ".join(_SECTIONS) + ")")
            if data.get("checksum") != _checksum({s: data[s] for s in _SECTIONS}):
                raise self._damaged("fails its checksum (edited or partly written)")
        elif version == 2:
            if data.get("checksum") != _checksum(data["tables"]):
                raise self._damaged("fails its checksum (edited or partly written)")
        elif version != 1:  # version 1 (no checksum) is what earlier nbflow wrote
            raise self._damaged(f"has an unknown format version {version!r}")
        if version != FORMAT_VERSION:
            # Before catalogs, tables were `schema.table` in Spark's one catalog: the legacy one.
            data = {"version": FORMAT_VERSION, "generation": data.get("generation", 0), "catalogs": {},
                    "schemas": {}, "volumes": {},
                    "tables": {_legacy(name): _legacy_entry(entry) for name, entry in data["tables"].items()}}
        for name, entry in data["tables"].items():
            if not isinstance(entry, dict) or set(entry) != set(_ENTRY_FIELDS) or entry.get("name") != name:
                raise self._damaged(f"has a malformed entry for table {name!r}")
        for name, entry in data["volumes"].items():
            if not isinstance(entry, dict) or set(entry) != set(_VOLUME_FIELDS) or entry.get("name") != name:
                raise self._damaged(f"has a malformed entry for volume {name!r}")
        for section in ("catalogs", "schemas"):
            if any(not isinstance(entry, dict) for entry in data[section].values()):
                raise self._damaged(f"has a malformed {section} section")
        return data

    def _damaged(self, what: str) -> CatalogDamaged:
        return CatalogDamaged(
            f"the table registry {self.path} {what}; rebuild it with `nbflow table rebuild` "
            "(from its last good copy and the Delta tables in the warehouse)"
        )

    def generation(self) -> int:
        """A counter that every change increments (a file time can repeat within a clock tick)."""
        return int(self._read().get("generation", 0))

    def tables(self) -> dict[str, TableEntry]:
        return {name: TableEntry(**entry) for name, entry in self._read().get("tables", {}).items()}

    def get(self, name: str, catalog: str = DEFAULT_CATALOG, schema: str = DEFAULT_SCHEMA) -> TableEntry | None:
        return self.tables().get(normalize(name, catalog, schema))

    def catalogs(self) -> dict[str, dict[str, Any]]:
        """Every catalog: the built-in ones and those users created (name → comment, created_at)."""
        found = {name: {"comment": comment, "created_at": ""} for name, comment in BUILTIN_CATALOGS.items()}
        found.update(self._read().get("catalogs", {}))
        return found

    def schemas(self) -> dict[str, dict[str, Any]]:
        """Every schema as ``catalog.schema``: each catalog's ``default``, those users created and
        those that hold a registered table."""
        data = self._read()
        found: dict[str, dict[str, Any]] = {f"{c}.{DEFAULT_SCHEMA}": {"comment": "", "created_at": ""}
                                            for c in self.catalogs() if c != SYSTEM_CATALOG}
        found.update({".".join(n.split(".")[:2]): {"comment": "", "created_at": ""} for n in data.get("tables", {})})
        found.update(data.get("schemas", {}))
        return found

    def volumes(self) -> dict[str, VolumeEntry]:
        return {name: VolumeEntry(**entry) for name, entry in self._read().get("volumes", {}).items()}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Contents]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            contents = _Contents(
                catalogs=dict(data.get("catalogs", {})), schemas=dict(data.get("schemas", {})),
                volumes={n: VolumeEntry(**e) for n, e in data.get("volumes", {}).items()},
                tables={n: TableEntry(**e) for n, e in data.get("tables", {}).items()})
            before = contents.as_json()
            yield contents
            after = contents.as_json()
            if after != before:
                self._write(after, int(data.get("generation", 0)) + 1)

    def _write(self, sections: dict[str, Any], generation: int) -> None:
        payload = {"version": FORMAT_VERSION, "generation": generation, "checksum": _checksum(sections), **sections}
        # Written whole, flushed and renamed, so a reader never sees half a file; the same
        # content goes to the copy a rebuild starts from, should the file be damaged later.
        for target in (self.backup, self.path):
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tables-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(payload, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    # -- tables -----------------------------------------------------------------------------
    def register(self, name: str, location: str, fmt: str, managed: bool) -> TableEntry:
        """Register (or re-point) the table ``catalog.schema.table``."""
        entry = TableEntry(normalize(name), location, fmt.lower(), managed, _now())
        with self._locked() as contents:
            contents.tables[entry.name] = entry
        return entry

    def register_new(self, name: str, location: str, fmt: str, managed: bool) -> TableEntry:
        """Register ``name`` unless another session registered it first; returns the entry that stands."""
        entry = TableEntry(normalize(name), location, fmt.lower(), managed, _now())
        with self._locked() as contents:
            return contents.tables.setdefault(entry.name, entry)

    def unregister(self, name: str, location: str | None = None) -> TableEntry | None:
        """Forget a table; with ``location``, only if it is still that table (not one re-created
        meanwhile by another notebook under the same name)."""
        with self._locked() as contents:
            entry = contents.tables.get(normalize(name))
            if entry is None or (location is not None and entry.location != location):
                return None
            return contents.tables.pop(entry.name)

    # -- catalogs, schemas, volumes ---------------------------------------------------------
    def create_catalog(self, name: str, comment: str = "", if_not_exists: bool = False) -> bool:
        """Create a catalog; False if it existed (and ``if_not_exists``)."""
        catalog = canonical_catalog(_one_part(name, "catalog"))
        with self._locked() as contents:
            if catalog in BUILTIN_CATALOGS or catalog in contents.catalogs:
                if if_not_exists:
                    return False
                raise CatalogObjectError("CATALOG_ALREADY_EXISTS", f"Catalog '{catalog}' already exists.")
            contents.catalogs[catalog] = {"comment": comment, "created_at": _now()}
        return True

    def drop_catalog(self, name: str, if_exists: bool = False, cascade: bool = False) -> list[TableEntry]:
        """Drop a catalog (with ``cascade``, its schemas, volumes and tables); returns the tables dropped."""
        catalog = canonical_catalog(_one_part(name, "catalog"))
        if catalog in BUILTIN_CATALOGS:
            raise CatalogObjectError("CANNOT_DROP_CATALOG",
                                     f"The catalog '{catalog}' is built in and cannot be dropped.")
        with self._locked() as contents:
            if catalog not in contents.catalogs:
                if if_exists:
                    return []
                raise CatalogObjectError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.")
            inside = [n for n in (*contents.schemas, *contents.volumes, *contents.tables)
                      if n.split(".")[0] == catalog and n != f"{catalog}.{DEFAULT_SCHEMA}"]
            if inside and not cascade:
                raise CatalogObjectError(
                    "CATALOG_NOT_EMPTY",
                    f"Cannot drop catalog '{catalog}': it contains {', '.join(sorted(inside)[:5])}. Use CASCADE.")
            return self._drop_prefix(contents, catalog, drop_catalog=True)

    def create_schema(self, name: str, comment: str = "", if_not_exists: bool = False,
                      catalog: str = DEFAULT_CATALOG) -> bool:
        """Create ``catalog.schema``; False if it existed (and ``if_not_exists``)."""
        full = ".".join(qualify(name, catalog, levels=2))
        self._writable(full)
        with self._locked() as contents:
            self._require_catalog(contents, full.split(".")[0])
            if full in contents.schemas or full.endswith(f".{DEFAULT_SCHEMA}") or any(
                    t.startswith(full + ".") for t in contents.tables):
                if if_not_exists:
                    return False
                raise CatalogObjectError("SCHEMA_ALREADY_EXISTS", f"Schema '{full}' already exists.")
            contents.schemas[full] = {"comment": comment, "created_at": _now()}
        return True

    def drop_schema(self, name: str, if_exists: bool = False, cascade: bool = False,
                    catalog: str = DEFAULT_CATALOG) -> list[TableEntry]:
        """Drop ``catalog.schema`` (with ``cascade``, its volumes and tables); returns the tables dropped."""
        full = ".".join(qualify(name, catalog, levels=2))
        self._writable(full)
        with self._locked() as contents:
            inside = [n for n in (*contents.volumes, *contents.tables) if n.startswith(full + ".")]
            if full not in contents.schemas and not inside and not full.endswith(f".{DEFAULT_SCHEMA}"):
                if if_exists:
                    return []
                raise CatalogObjectError("SCHEMA_NOT_FOUND", f"The schema `{full}` cannot be found.")
            if inside and not cascade:
                raise CatalogObjectError(
                    "SCHEMA_NOT_EMPTY",
                    f"Cannot drop a schema `{full}` because it contains objects ({', '.join(sorted(inside)[:5])}). "
                    "Use DROP SCHEMA ... CASCADE to drop the schema and all its objects.")
            return self._drop_prefix(contents, full)

    def schema_exists(self, name: str, catalog: str = DEFAULT_CATALOG) -> bool:
        return ".".join(qualify(name, catalog, levels=2)) in self.schemas()

    def create_volume(self, name: str, location: str | None = None, comment: str = "",
                      if_not_exists: bool = False, catalog: str = DEFAULT_CATALOG,
                      schema: str = DEFAULT_SCHEMA) -> VolumeEntry:
        """Create a volume: managed (a folder under ``.nbflow/volumes``) or external (``location``)."""
        full = normalize(name, catalog, schema)
        self._writable(full)
        with self._locked() as contents:
            self._require_catalog(contents, full.split(".")[0])
            schema_name = full.rsplit(".", 1)[0]
            if not (schema_name in contents.schemas or schema_name.endswith(f".{DEFAULT_SCHEMA}")
                    or any(t.startswith(schema_name + ".") for t in contents.tables)):
                raise CatalogObjectError("SCHEMA_NOT_FOUND", f"The schema `{schema_name}` cannot be found.")
            existing = contents.volumes.get(full)
            if existing is not None:
                if if_not_exists:
                    return existing
                raise CatalogObjectError("VOLUME_ALREADY_EXISTS", f"Volume '{full}' already exists.")
            managed = location is None
            folder = self.volumes_root.joinpath(*full.split(".")) if managed else Path(location or "")
            folder.mkdir(parents=True, exist_ok=True)
            if not managed:
                # An empty folder where the sandbox binds the location (nbflow.sandbox): there
                # /Volumes is read-only but for the volumes bound onto it.
                self.volumes_root.joinpath(*full.split(".")).mkdir(parents=True, exist_ok=True)
            entry = VolumeEntry(full, str(folder), managed, comment, _now())
            contents.volumes[full] = entry
        return entry

    def drop_volume(self, name: str, if_exists: bool = False, catalog: str = DEFAULT_CATALOG,
                    schema: str = DEFAULT_SCHEMA) -> VolumeEntry | None:
        full = normalize(name, catalog, schema)
        with self._locked() as contents:
            entry = contents.volumes.pop(full, None)
            if entry is None and not if_exists:
                raise CatalogObjectError("VOLUME_NOT_FOUND", f"Volume '{full}' does not exist.")
        if entry is not None:
            self._remove_volume_folder(entry)
        return entry

    def _remove_volume_folder(self, entry: VolumeEntry) -> None:
        """A managed volume's files go with it; an external one's stay, its mount point goes."""
        if entry.managed:
            shutil.rmtree(entry.location, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # empty unless something wrote into it without the sandbox
                self.volumes_root.joinpath(*entry.name.split(".")).rmdir()

    def volume_for_path(self, path: str) -> VolumeEntry | None:
        """The volume that ``/Volumes/catalog/schema/volume/...`` is in, if it exists."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 4 or parts[0] != "Volumes":
            return None
        return self.volumes().get(".".join(p.lower() for p in parts[1:4]))

    def _require_catalog(self, contents: _Contents, catalog: str) -> None:
        if catalog not in BUILTIN_CATALOGS and catalog not in contents.catalogs:
            raise CatalogObjectError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.")

    @staticmethod
    def _writable(full: str) -> None:
        if full.split(".")[0] == SYSTEM_CATALOG:
            raise CatalogObjectError("READ_ONLY_CATALOG", f"The catalog '{SYSTEM_CATALOG}' is read-only.")

    def _drop_prefix(self, contents: _Contents, prefix: str, drop_catalog: bool = False) -> list[TableEntry]:
        dropped = [contents.tables.pop(n) for n in list(contents.tables) if n.startswith(prefix + ".")]
        for name in [n for n in contents.volumes if n.startswith(prefix + ".")]:
            self._remove_volume_folder(contents.volumes.pop(name))
        for name in [n for n in contents.schemas if n == prefix or n.startswith(prefix + ".")]:
            del contents.schemas[name]
        if drop_catalog:
            contents.catalogs.pop(prefix, None)
        return dropped

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[None]:
        """Hold the name ``catalog.schema.table`` while a session creates that table (see the module doc).

        Other processes and threads claiming the same name wait; other names are not held up.
        A thread that already holds the name (a create inside a create) does not wait on itself.
        """
        key = normalize(name)
        held: set[str] = _claims.__dict__.setdefault("names", set())
        if key in held:
            yield
            return
        folder = self.folder / "claims"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / (urllib.parse.quote(key, safe="") + ".lock"), "w") as lock:
            deadline = time.monotonic() + CLAIM_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CatalogBusy(
                            f"table {key}: another notebook has been creating it for over {CLAIM_TIMEOUT_S:.0f} s; "
                            "its claim is held in " + str(folder)
                        ) from None
                    time.sleep(0.05)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)

    def rebuild(self, warehouse: Path) -> tuple[dict[str, TableEntry], list[str]]:
        """Write a sound registry from the last good copy and the warehouse's Delta tables.

        Returns the tables now registered and notes on what was decided. The damaged file is
        kept as ``tables.json.damaged``.
        """
        notes: list[str] = []
        found: dict[str, TableEntry] = {}
        kept: dict[str, Any] = {"catalogs": {}, "schemas": {}, "volumes": {}}
        if self.backup.exists():
            try:
                good = self._check(self.backup.read_text("utf-8"))
                found = {n: TableEntry(**e) for n, e in good["tables"].items() if Path(e["location"]).exists()}
                kept = {section: good[section] for section in ("catalogs", "schemas", "volumes")}
                notes.append(f"{len(found)} table(s) from the last good copy {self.backup}")
            except (CatalogDamaged, OSError, UnicodeDecodeError):
                notes.append(f"the last good copy {self.backup} is damaged too: not used")
        # A name the good copy registered keeps its folder; a name only the warehouse knows takes
        # its most recently committed copy (several copies are what a lost race used to leave).
        recovered: dict[str, float] = {}
        registered = {entry.location for entry in found.values()}
        for name, location, mtime in _warehouse_tables(warehouse):
            if location in registered:
                continue
            current = found.get(name)
            if current is None or (name in recovered and mtime > recovered[name]):
                if current is not None:
                    notes.append(f"{name}: the older copy {current.location} is not registered")
                found[name] = TableEntry(name, location, "delta", True, _now())
                recovered[name] = mtime
            elif current.location != location:
                notes.append(f"{name}: the copy {location} is not registered")
        notes.extend(f"{name} recovered from the warehouse: {found[name].location}" for name in sorted(recovered))
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                os.replace(self.path, self.folder / "tables.json.damaged")
                notes.append(f"the old file is kept as {self.folder / 'tables.json.damaged'}")
            # A new generation no session has seen, so that every session looks again.
            sections = {**kept, "tables": {n: asdict(t) for n, t in sorted(found.items())}}
            self._write(sections, int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000))
        return found, notes


_claims = threading.local()


def _checksum(entries: dict[str, Any]) -> str:
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _warehouse_tables(warehouse: Path) -> Iterator[tuple[str, str, float]]:
    """``(catalog.schema.table, folder, time of its last commit)`` for each Delta table in the warehouse.

    Managed tables live in ``<warehouse>/<schema>.db/<table>`` (Apache Spark's legacy catalog) or
    ``<warehouse>/<table>-<id>`` (Sail, whatever the catalog and schema: such a table is recovered
    into ``main.default``).
    """
    if not warehouse.is_dir():
        return
    for log in sorted(warehouse.glob("**/_delta_log")):
        folder = log.parent
        relative = folder.relative_to(warehouse).parts
        if len(relative) == 1:
            schema = f"{DEFAULT_CATALOG}.{DEFAULT_SCHEMA}"
        elif len(relative) == 2 and relative[0].endswith(".db"):
            schema = f"{LEGACY_CATALOG}." + relative[0][: -len(".db")]
        else:
            continue
        commits = sorted(log.glob("*.json"))
        if commits:
            table = _SAIL_SUFFIX.sub("", relative[-1])
            yield f"{schema}.{table}".lower(), str(folder), commits[-1].stat().st_mtime


def _legacy(name: str) -> str:
    return f"{LEGACY_CATALOG}.{name}" if name.count(".") == 1 else name


def _legacy_entry(entry: Any) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        return {**entry, "name": _legacy(entry["name"])}
    return entry


def _one_part(name: str, kind: str) -> str:
    parts = split_name(name)
    if len(parts) != 1:
        raise CatalogObjectError("INVALID_IDENTIFIER", f"{name!r} is not a {kind} name (one part expected)")
    return parts[0]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def describe(entry: TableEntry) -> dict[str, Any]:
    """A table's facts for ``nbflow table list``: version and rows from the Delta log (delta-rs)."""
    facts: dict[str, Any] = {"name": entry.full_name, "location": entry.location, "format": entry.format,
                             "version": None, "rows": None}
    if entry.format == "delta":
        from deltalake import DeltaTable  # lazy: loads pyarrow (~0.2 s); kernels import this module

        table = DeltaTable(entry.location)
        facts["version"] = table.version()
        facts["rows"] = table.count()
    return facts
