"""papermill reads Databricks source notebooks (``.py``, ``.sql``) through nbflow.

``papermill in.sql out.ipynb --engine nbflow`` loads its input before any engine runs, with its
own local file reader, which expects JSON. This module (entry point group ``papermill.io``,
loaded while ``papermill.iorw`` is imported) puts a reader in its place that parses a file
starting with a Databricks source header into a notebook and reads every other file as
papermill does. A Scala or R source notebook fails with nbflow's one-line error.

papermill takes the *last* handler registered as ``local`` and keeps its own there, so
registering under that name is not enough: the built-in entry is replaced in papermill's list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from papermill.iorw import LocalHandler, papermill_io

from .notebooks import is_source_notebook, read_notebook, source_header


class SourceNotebookHandler(LocalHandler):  # type: ignore[misc]
    """papermill's local reader, which also reads Databricks source notebooks."""

    def read(self, path: Any) -> Any:
        if isinstance(path, str) and "://" not in path and source_header(Path(path).suffix) is not None:
            file = Path(path) if self._cwd is None else Path(self._cwd) / path
            if is_source_notebook(file):
                return nbformat.writes(read_notebook(file))
        return super().read(path)


handler = SourceNotebookHandler()
papermill_io._handlers = [(scheme, handler if scheme == "local" else h) for scheme, h in papermill_io._handlers]
