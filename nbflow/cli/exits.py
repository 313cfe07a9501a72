"""The one error handler of nbflow's commands, and the one map from a result state to an exit
code (the table is in :mod:`nbflow.cli`'s docstring)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Final, NoReturn

import click

from ..errors import NbflowError
from ..lifecycle import interrupted_exit_code, stop_on_sigterm
from ..runs import CANCELED, FAILED, SUCCESS, SUCCESS_WITH_FAILURES, TIMEDOUT

FAILURE: Final = 1
# A notebook's status, a plan run's or a remote run's result state -> the exit code; every
# other state (a workspace's INTERNAL_ERROR, SKIPPED...) is a failure too. A cancelled run exits
# as an interrupted process does: 130, or 143 if this process got SIGTERM (see exit_code).
EXIT_CODES: Final[Mapping[str, int]] = {
    SUCCESS: 0,
    SUCCESS_WITH_FAILURES: 0,  # some tasks failed, every leaf task succeeded: the job succeeded
    FAILED: FAILURE,
    TIMEDOUT: FAILURE,
    CANCELED: 128 + signal.SIGINT,
}


def exit_code(state: str) -> int:
    """The exit code of a run that ended in ``state``."""
    if state == CANCELED:
        return interrupted_exit_code()  # the map's 130, unless this process was sent SIGTERM
    return EXIT_CODES.get(state, FAILURE)


SIGPIPE_EXIT = 128 + 13  # what a shell reports for a command that SIGPIPE stopped


def finish(state: str) -> None:
    """End the command with the exit code of ``state`` (return if it is 0)."""
    code = exit_code(state)
    if code:
        sys.exit(code)


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, ``nbflow: <message>``, and exit ``code``."""
    click.echo(f"nbflow: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def errors_handled() -> Iterator[None]:
    """Around a command: an NbflowError becomes its lines on stderr and its exit code, Ctrl-C
    exit 130, a defect one line (``NBFLOW_DEBUG=1`` shows its traceback). click's own usage
    errors pass through to click (exit 2 with its usage line).

    SIGTERM (kill, a CI runner's cancel) stops a command as Ctrl-C does: runs are cancelled,
    kernels stopped and notebooks saved, exit 143. Python runs signal handlers in the main thread
    only, so a command run from another thread (a test's) keeps the process's handler.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main:
        stop_on_sigterm()
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except NbflowError as exc:
        # A plan can have several problems at once: each gets its own line.
        problems: list[str] = list(getattr(exc, "problems", None) or [])
        for problem in problems[:-1]:
            click.echo(f"nbflow: {problem}", err=True)
        message = problems[-1] if problems else (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        fail(message, exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", interrupted_exit_code())
    except BrokenPipeError:
        # The reader of stdout went away (`nbflow ... | head -1`): end quietly, as a command that
        # SIGPIPE stops does (exit 141), with stdout on /dev/null so the final flush cannot raise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(SIGPIPE_EXIT)
    except Exception as exc:  # a defect of nbflow's: one line, the traceback on request
        if os.environ.get("NBFLOW_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (NBFLOW_DEBUG=1 shows the traceback)", FAILURE)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
