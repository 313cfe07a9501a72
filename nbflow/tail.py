"""Following a file as it grows: a notebook's printed output, written by a process elsewhere."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO

POLL_S = 0.1


class Tail:
    """Copies what is appended to ``path`` to ``out`` (stderr) from a thread, until :meth:`close`,
    which copies the rest first."""

    def __init__(self, path: Path, out: IO[str] | None = None) -> None:
        self.path = path
        self.out = out or sys.stderr
        self._offset = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="nbflow-tail", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._done.wait(POLL_S):
            self._copy()

    def _copy(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self._offset)
                text = handle.read()
                self._offset = handle.tell()
        except OSError:
            return  # not written yet
        if text:
            self.out.write(text)
            self.out.flush()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._copy()
