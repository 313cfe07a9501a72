"""nbflow: run Databricks notebooks locally the way Databricks runs them.

The public API: :func:`run_notebook` runs one notebook and returns its :class:`NotebookResult`
(:func:`read_result` reads one from an executed notebook); :func:`run_plan` runs a plan
(:func:`load_plan` reads and checks one; :class:`Plan` builds one in code) and returns its
:class:`PlanRun`, one :class:`TaskRun` per task. Every error nbflow raises on purpose is an
:class:`NbflowError`: bad input an :class:`InputError`, a machine that cannot run the work an
:class:`EnvironmentFailure`.

Everything but the errors is imported on first use: every notebook kernel imports
``nbflow.runtime``, and must not pay for papermill, pydantic and nbformat on the way.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Final

from .errors import EnvironmentFailure, InputError, NbflowError

if TYPE_CHECKING:  # the same names as _LAZY, for type checkers (a test checks that they agree)
    from .plan import Plan as Plan
    from .plan import load_plan as load_plan
    from .plan_runner import run_plan as run_plan
    from .results import read_result as read_result
    from .runner import run_notebook as run_notebook
    from .runs import NotebookResult as NotebookResult
    from .runs import PlanRun as PlanRun
    from .runs import TaskRun as TaskRun

__version__ = "0.1.0"

# The public names imported on first use: name -> the module (in nbflow) that defines it.
_LAZY: Final[dict[str, str]] = {
    "NotebookResult": "runs",
    "Plan": "plan",
    "PlanRun": "runs",
    "TaskRun": "runs",
    "load_plan": "plan",
    "read_result": "results",
    "run_notebook": "runner",
    "run_plan": "plan_runner",
}

__all__ = ["EnvironmentFailure", "InputError", "NbflowError", "__version__", *_LAZY]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflow' has no attribute {name!r}")
    value: object = getattr(import_module(f".{module}", __name__), name)  # lazy: kernels import nbflow
    globals()[name] = value  # found once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nbflow``: the Databricks runtime (``spark``, ``dbutils``, ``display``, ``%sql``,
    ``%run``...) in this IPython kernel, for the project of the notebook's folder."""
    from .runtime import interactive  # lazy: the runtime, only once asked for

    interactive.load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext nbflow``: the runtime's names, magics and hooks taken out again."""
    from .runtime import interactive  # lazy: as load_ipython_extension

    interactive.unload(ipython)
