"""The one error handler of nbflow's commands: an NbflowError becomes one line and its exit code.

Exit codes: 0 success, 1 a notebook failed or timed out, 2 bad usage or bad input,
3 the environment could not run the work (no kernel), 130 interrupted (Ctrl-C), 143 stopped by
SIGTERM (treated as Ctrl-C: runs are cancelled and their results written).

Its own module so that every command module imports it without importing the ``nbflow`` group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from .errors import NbflowError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    click.echo(f"nbflow: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn an NbflowError into one line on stderr and its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import signal
        import threading

        from .lifecycle import stop_on_sigterm

        # SIGTERM (kill, a CI runner's cancel) stops a command as Ctrl-C does: runs are cancelled,
        # kernels stopped and notebooks saved, exit 143. Python runs handlers in the main thread only.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        if main:
            stop_on_sigterm()
        try:
            return _mapped(func, *args, **kwargs)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _mapped(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a command; an NbflowError becomes its lines on stderr and its exit code."""
    try:
        return func(*args, **kwargs)
    except NbflowError as exc:
        # A plan can have several problems at once: each gets its own line.
        for problem in getattr(exc, "problems", [])[:-1]:
            click.echo(f"nbflow: {problem}", err=True)
        last = getattr(exc, "problems", None)
        message = last[-1] if last else (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        fail(message, exc.exit_code)
    except KeyboardInterrupt:
        from .lifecycle import interrupted_exit_code

        fail("interrupted", interrupted_exit_code())
    except Exception as exc:  # a defect of nbflow's: one line, the traceback on request
        if os.environ.get("NBFLOW_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (NBFLOW_DEBUG=1 shows the traceback)", 1)
    return None


