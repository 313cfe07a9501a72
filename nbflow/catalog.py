"""The shared table catalog: which table names exist in the project, and where their data is.

Databricks notebooks on one cluster share one metastore: a table written by one notebook is
visible by name to every other. Sail, the engine that runs Delta here, keeps a catalog per
Spark Connect session, and Apache Spark's server forgets its in-memory catalog on restart. So
nbflow keeps the project's catalog itself, in ``.nbflow/catalog/tables.json``: every kernel
registers the tables its session creates and attaches the tables others registered (see
:mod:`nbflow.runtime.lakehouse`). The data stays in ordinary Delta (or Parquet) folders that
any Delta reader opens.

Why not Sail's Unity Catalog provider: tried with a local UC REST endpoint, Sail then creates
"catalog-managed" Delta tables (reader feature ``catalogManaged``) whose commits go through the
catalog's commit API, which delta-rs and older Delta readers cannot open.

The file carries a format version and a checksum of its tables, and a good copy is kept
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
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import CatalogBusy, CatalogDamaged

DEFAULT_CATALOG = "spark_catalog"
DEFAULT_SCHEMA = "default"
FORMAT_VERSION = 2
# How long a session waits for another to finish creating the same table (a CTAS can be long;
# a claim is let go when its holder ends, even by a crash: it is a file lock).
CLAIM_TIMEOUT_S = 600.0
_ENTRY_FIELDS = ("name", "location", "format", "managed", "updated_at")
_SAIL_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class TableEntry:
    name: str  # schema.table, lower case, as Spark resolves unquoted names
    location: str  # absolute path of the table's folder
    format: str  # "delta", "parquet", ...
    managed: bool  # dropping the table removes its data
    updated_at: str

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def full_name(self) -> str:
        return f"{DEFAULT_CATALOG}.{self.name}"


def normalize(name: str, current_schema: str = DEFAULT_SCHEMA) -> str:
    """``t``, ``schema.t`` or ``catalog.schema.t`` → ``schema.t`` (backticks removed, lower case)."""
    parts = [p.strip("`") for p in name.split(".")]
    if len(parts) == 1:
        parts = [current_schema, *parts]
    return ".".join(parts[-2:]).lower()


class Registry:
    """The project's table registry: a JSON file changed under an exclusive file lock."""

    def __init__(self, project: str | Path) -> None:
        self.folder = Path(project) / ".nbflow" / "catalog"
        self.path = self.folder / "tables.json"
        self.backup = self.folder / "tables.json.bak"
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
        """The parsed file, or :class:`CatalogDamaged` saying what is wrong with it."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self._damaged(f"is not valid JSON ({str(exc)[:120]})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
            raise self._damaged("has no tables section")
        version = data.get("version")
        if version == FORMAT_VERSION:
            if data.get("checksum") != _checksum(data["tables"]):
                raise self._damaged("fails its checksum (edited or partly written)")
        elif version != 1:  # version 1 (no checksum) is what earlier nbflow wrote
            raise self._damaged(f"has an unknown format version {version!r}")
        for name, entry in data["tables"].items():
            if not isinstance(entry, dict) or set(entry) != set(_ENTRY_FIELDS) or entry.get("name") != name:
                raise self._damaged(f"has a malformed entry for table {name!r}")
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

    def get(self, name: str) -> TableEntry | None:
        return self.tables().get(normalize(name))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, TableEntry]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            tables = {name: TableEntry(**entry) for name, entry in data.get("tables", {}).items()}
            before = dict(tables)
            yield tables
            if tables != before:
                self._write(tables, int(data.get("generation", 0)) + 1)

    def _write(self, tables: dict[str, TableEntry], generation: int) -> None:
        entries = {name: asdict(e) for name, e in sorted(tables.items())}
        payload = {"version": FORMAT_VERSION, "generation": generation, "checksum": _checksum(entries),
                   "tables": entries}
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

    def register(self, name: str, location: str, fmt: str, managed: bool) -> TableEntry:
        entry = TableEntry(normalize(name), location, fmt.lower(), managed, _now())
        with self._locked() as tables:
            tables[entry.name] = entry
        return entry

    def register_new(self, name: str, location: str, fmt: str, managed: bool) -> TableEntry:
        """Register ``name`` unless another session registered it first; returns the entry that stands."""
        entry = TableEntry(normalize(name), location, fmt.lower(), managed, _now())
        with self._locked() as tables:
            return tables.setdefault(entry.name, entry)

    def unregister(self, name: str, location: str | None = None) -> TableEntry | None:
        """Forget a table; with ``location``, only if it is still that table (not one re-created
        meanwhile by another notebook under the same name)."""
        with self._locked() as tables:
            entry = tables.get(normalize(name))
            if entry is None or (location is not None and entry.location != location):
                return None
            return tables.pop(entry.name)

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[None]:
        """Hold the name ``schema.table`` while a session creates that table (see the module doc).

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
        if self.backup.exists():
            try:
                kept = self._check(self.backup.read_text("utf-8"))["tables"]
                found = {n: TableEntry(**e) for n, e in kept.items() if Path(e["location"]).exists()}
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
            self._write(found, int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000))
        return found, notes


_claims = threading.local()


def _checksum(entries: dict[str, Any]) -> str:
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _warehouse_tables(warehouse: Path) -> Iterator[tuple[str, str, float]]:
    """``(schema.table, folder, time of its last commit)`` for each Delta table in the warehouse.

    Managed tables live in ``<warehouse>/<schema>.db/<table>`` (Apache Spark; ``default`` at the
    top level) or ``<warehouse>/<table>-<id>`` (Sail, whatever the schema: such a table is
    recovered into ``default``).
    """
    if not warehouse.is_dir():
        return
    for log in sorted(warehouse.glob("**/_delta_log")):
        folder = log.parent
        relative = folder.relative_to(warehouse).parts
        if len(relative) == 1:
            schema = DEFAULT_SCHEMA
        elif len(relative) == 2 and relative[0].endswith(".db"):
            schema = relative[0][: -len(".db")]
        else:
            continue
        commits = sorted(log.glob("*.json"))
        if commits:
            table = _SAIL_SUFFIX.sub("", relative[-1])
            yield f"{schema}.{table}".lower(), str(folder), commits[-1].stat().st_mtime


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def describe(entry: TableEntry) -> dict[str, Any]:
    """A table's facts for ``nbflow table list``: version and rows from the Delta log (delta-rs)."""
    facts: dict[str, Any] = {"name": entry.full_name, "location": entry.location, "format": entry.format,
                             "version": None, "rows": None}
    if entry.format == "delta":
        from deltalake import DeltaTable

        table = DeltaTable(entry.location)
        facts["version"] = table.version()
        facts["rows"] = table.count()
    return facts
