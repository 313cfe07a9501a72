"""Make ``from delta.tables import DeltaTable`` work in a kernel without delta-spark."""

from __future__ import annotations

import importlib.util
import sys
import types

from . import delta_tables


def install() -> bool:
    """Register nbflow's DeltaTable as ``delta.tables`` unless the real package is installed."""
    if importlib.util.find_spec("delta") is not None:
        return False
    package = types.ModuleType("delta", "nbflow's stand-in for delta-spark's Python package")
    package.__path__ = []  # a package, so that "delta.tables" imports
    tables = types.ModuleType("delta.tables", delta_tables.__doc__)
    tables.DeltaTable = delta_tables.DeltaTable  # type: ignore[attr-defined]
    tables.DeltaMergeBuilder = delta_tables.DeltaMergeBuilder  # type: ignore[attr-defined]
    package.tables = tables  # type: ignore[attr-defined]
    package._nbflow_stand_in = tables._nbflow_stand_in = True  # type: ignore[attr-defined]
    sys.modules.setdefault("delta", package)
    sys.modules.setdefault("delta.tables", tables)
    return True


def uninstall() -> None:
    """Take nbflow's stand-in out of ``sys.modules`` again (never a real delta package)."""
    for name in ("delta.tables", "delta"):
        module = sys.modules.get(name)
        if getattr(module, "_nbflow_stand_in", False):
            del sys.modules[name]
