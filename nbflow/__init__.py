"""nbflow: run Databricks notebooks locally the way Databricks runs them.

The public API is imported lazily: every notebook kernel imports ``nbflow.runtime``, and must
not pay for papermill and nbformat on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import NbflowError

if TYPE_CHECKING:
    from .results import read_result
    from .runner import run_notebook
    from .runs import NotebookResult

__version__ = "0.1.0"

__all__ = ["NbflowError", "NotebookResult", "__version__", "read_result", "run_notebook"]

_LAZY = {"NotebookResult": "runs", "read_result": "results", "run_notebook": "runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nbflow' has no attribute {name!r}")
