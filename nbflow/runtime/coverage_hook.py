"""Coverage of the code a notebook imports, measured inside its kernel (``pytest --nbflow-cov``).

The caller sets ``NBFLOW_COVERAGE`` (JSON: ``data_file``, ``source``, ``rcfile``); a kernel that
finds it in its environment (its own, or the one it takes over from its caller) starts
coverage.py before the notebook's first cell and saves a parallel data file
(``<data_file>.<host>.<pid>.<random>``) when the engine asks for the run's end state or before
``restartPython()``: ``coverage combine`` (or pytest-cov, which combines what lies beside its own
data file) then merges every kernel's. A notebook's ``dbutils.notebook.run`` children inherit the
variable, so they are measured too. The cells themselves are not files and are not reported.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

ENV = "NBFLOW_COVERAGE"

_active: Any = None


def start() -> None:
    """Start measuring, if the run asks for it and coverage.py is installed (once per kernel)."""
    global _active
    text = os.environ.get(ENV, "").strip()
    if not text or _active is not None:
        return
    try:
        config = json.loads(text)
        import coverage  # lazy: only when the run asks for coverage
    except ImportError:
        print(f"nbflow: warning: {ENV} is set but coverage.py is not installed in the kernel's Python "
              f"({sys.executable}): no coverage for this notebook", file=sys.stderr)
        return
    except ValueError:
        print(f"nbflow: warning: {ENV} is not JSON: no coverage for this notebook", file=sys.stderr)
        return
    try:
        measuring = coverage.Coverage(data_file=config.get("data_file") or ".coverage", data_suffix=True,
                                      source=config.get("source") or None, config_file=config.get("rcfile") or False)
        measuring.start()
    except Exception as exc:  # a bad configuration costs the coverage, never the notebook
        print(f"nbflow: warning: coverage not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    _active = measuring


def save() -> None:
    """Stop measuring and write this kernel's data file (nothing if not measuring)."""
    global _active
    if _active is None:
        return
    measured, _active = _active, None
    try:
        measured.stop()
        measured.save()
    except Exception as exc:  # the run's end state matters more than its coverage
        print(f"nbflow: warning: coverage not saved: {type(exc).__name__}: {exc}", file=sys.stderr)
