"""JSON state files written whole or not at all. Standard library only: kernels import it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, **dumps: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader, or a crash, never sees half of it;
    writers in other processes and threads do not share a temporary file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_text(json.dumps(data, **dumps), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
