"""The runtime session of this kernel: one per kernel, set when the engine installs the runtime
(:func:`nbflow.runtime.kernel.install`), read by what has no session handed to it (``DeltaTable``,
the ``dbruntime`` stand-ins, MLflow's patches)."""

from __future__ import annotations

from .context import RunContext
from .session import Session

_session: Session | None = None


def current() -> Session:
    """The runtime session of this kernel (installs a default one outside nbflow)."""
    global _session
    if _session is None:
        _session = Session(RunContext())
    return _session


def installed() -> Session | None:
    """The session the engine installed; None outside an nbflow kernel."""
    return _session


def activate(session: Session) -> None:
    global _session
    _session = session
