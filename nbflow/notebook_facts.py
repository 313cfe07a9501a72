"""What a command needs to know of its notebooks before any of them runs, remembered between commands.

A plan's run checks that every task's notebook can be read, and looks at their cells to decide
whether to start the cluster and attach Spark ahead of time. Reading a notebook fully (nbformat
and its JSON schema validator) costs a tenth of a second of every command's start, so the answers
are kept, as Python keeps compiled modules: in the project's ``.nbflow/cache/notebooks.json``,
keyed by the file's path, size and modification time and by the reader's own source file (a
changed reader reads again). A file that changes is read again; a cache that cannot be read or
written is ignored.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import notebooks
from .errors import InputError
from .json_files import write_json
from .project import cache_dir, project_dir

KEEP = 2000  # entries kept in the file: a project's notebooks, with room for moves and renames


@dataclass(frozen=True)
class Facts:
    problem: str  # why nbflow cannot read the notebook, in one line ("" when it can)
    spark: bool  # it mentions Spark (notebooks.SPARK_HINT): a hint, not a proof
    orchestrates: bool  # it runs other notebooks (notebooks.ORCHESTRATION_HINT)


_memory: dict[str, tuple[list[int], Facts]] = {}
_lock = threading.Lock()


def facts(path: str | Path) -> Facts:
    """The facts of the notebook at ``path`` (remembered while it is unchanged)."""
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError:
        return _read(path)  # the reader words it (not found, not readable)
    reader = Path(notebooks.__file__).stat().st_mtime_ns
    key, stamp = str(path), [st.st_size, st.st_mtime_ns, reader]
    with _lock:
        known = _memory.get(key)
        if known is None:
            _memory.update(_load())
            known = _memory.get(key)
    if known is not None and known[0] == stamp:
        return known[1]
    found = _read(path)
    with _lock:
        _memory[key] = (stamp, found)
    _save(key, stamp, found)
    return found


def uses_spark(path: str | Path) -> bool:
    """Whether a notebook mentions Spark (``spark``, ``%sql``, ``DeltaTable``): a hint, not a proof.

    A notebook that reaches Spark only through a ``%run`` include or a child still works; its
    session is attached when first used instead of ahead of time.
    """
    return facts(path).spark


def wants_cluster(path: str | Path) -> bool:
    """Whether a run of this notebook should start the project's cluster (and its warm kernels):
    it uses Spark, or runs other notebooks, which mostly do."""
    found = facts(path)
    return found.spark or found.orchestrates


def _read(path: Path) -> Facts:
    try:
        nb = notebooks.read_notebook(path)
    except InputError as exc:
        return Facts(str(exc), False, False)
    except OSError as exc:
        return Facts(f"{path}: cannot read it ({exc.strerror or exc})", False, False)
    sources = [cell.source for cell in nb.cells]
    return Facts("", any(notebooks.SPARK_HINT.search(s) for s in sources),
                 any(notebooks.ORCHESTRATION_HINT.search(s) for s in sources))


def _file() -> Path:
    return cache_dir(project_dir()) / "notebooks.json"


def _load() -> dict[str, tuple[list[int], Facts]]:
    try:
        entries = json.loads(_file().read_text(encoding="utf-8"))
        return {key: (list(value["stamp"]), Facts(**value["facts"])) for key, value in entries.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # none yet, or damaged: read the notebooks again


def _save(key: str, stamp: list[int], found: Facts) -> None:
    """Add one entry to the file, keeping what other commands added meanwhile (last writer wins
    an entry both wrote; either answer is right for the file it stamped)."""
    target = _file()
    with contextlib.suppress(OSError):
        entries: dict[str, Any] = {k: {"stamp": s, "facts": asdict(f)} for k, (s, f) in _load().items()}
        entries.pop(key, None)
        entries[key] = {"stamp": stamp, "facts": asdict(found)}  # last: the most recent
        kept = dict(list(entries.items())[-KEEP:])
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, kept)
