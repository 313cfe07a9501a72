"""Process life cycle: whatever nbflow starts dies with what started it, in every launch mode.

Three mechanisms, each covering what the others miss:

- A **lifeline**: a pipe whose write end only the starting process holds. The started process
  (a plan worker, a kernel) blocks on reading it in a thread; end of file means its starter is
  gone, however it died (SIGKILL included) and whatever signal dispositions it inherited: a
  background job of a shell ignores SIGINT, so an interrupt cannot be the way to stop it. It works
  on macOS too, and, unlike ``PR_SET_PDEATHSIG``, does not fire when the *thread* that started
  the process ends (the pool starts replacement workers from threads that end).
  Processes started by code we do not own (``dbutils.notebook.run`` children) watch their
  parent's pid instead.
- A **tree tag**: every process nbflow starts carries ``NBFLOW_TREE``, the tags of its owners
  (``worker-…:kernel-…``), and passes it on to everything it starts, as environments are
  inherited. Stopping a kernel ends every process that carries its tag: a notebook's
  ``os.fork``, a new session, a double fork or ``%sh nohup ... &`` all escape the kernel's
  process group, none escapes the tag. A process group alone (or a pid) is not enough.
- On Linux a kernel is a **child subreaper**: an orphan of the notebook (a double fork) is
  reparented to the kernel rather than to init, so it is among the kernel's descendants even if
  it dropped its environment.

Processes meant to outlive the tree that started them (the project's cluster server, which a
notebook may start) carry ``NBFLOW_OUTLIVES_RUN`` and are spared, with their descendants.

The kernel's launch command is ``python -m nbflow.lifecycle ipykernel_launcher -f CONN``: it enters
the project's sandbox (:mod:`nbflow.sandbox`, while the process still has one thread), arms the
kernel's lifeline, then runs ``ipykernel_launcher`` in the same process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from . import sandbox

TREE_ENV = "NBFLOW_TREE"
LIFELINE_ENV = "NBFLOW_LIFELINE"  # the fd number of a started process's lifeline (read end)
OUTLIVES_ENV = "NBFLOW_OUTLIVES_RUN"
KILL_GRACE_S = 2.0  # SIGTERM first; SIGKILL for what is left after this long
ORPHAN_GRACE_S = 5.0  # an orphaned worker or child gets this long to cancel its notebook cleanly
POLL_S = 0.25  # how often a process without a lifeline checks its parent
_PR_SET_CHILD_SUBREAPER = 36


def new_tag(kind: str) -> str:
    return f"{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def tagged_env(tag: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``tag`` added to the tree tags it passes on."""
    result = dict(os.environ if env is None else env)
    result[TREE_ENV] = ":".join(t for t in (result.get(TREE_ENV, ""), tag) if t)
    return result


def own_tag() -> str | None:
    """The last tree tag this process was started with: its own."""
    tags = os.environ.get(TREE_ENV, "").split(":")
    return tags[-1] or None


def add_own_tag(kind: str) -> str:
    """Give this process a tag of its own, passed on to what it starts from now on."""
    tag = new_tag(kind)
    os.environ[TREE_ENV] = tagged_env(tag)[TREE_ENV]
    return tag


# -- ending a tree -------------------------------------------------------------------------------
def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has ended; only its parent's wait is missing)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def members(tag: str, roots: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """The live processes of a tree: those carrying ``tag``, plus ``roots`` and their descendants;
    never this process, its ancestors, or a process meant to outlive the run (and its descendants)."""
    found: dict[int, psutil.Process] = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            if root.is_running():
                found[root.pid] = root
                found.update((p.pid, p) for p in root.children(recursive=True))
    spared: set[int] = set()
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except psutil.Error:
            continue  # gone, or another user's (never ours)
        if OUTLIVES_ENV in env:
            spared.add(proc.pid)
        elif tag in env.get(TREE_ENV, "").split(":"):
            found[proc.pid] = proc
    for pid in list(spared):
        with contextlib.suppress(psutil.Error):
            spared.update(p.pid for p in psutil.Process(pid).children(recursive=True))
    me = psutil.Process()
    spared.add(me.pid)
    with contextlib.suppress(psutil.Error):
        spared.update(p.pid for p in me.parents())
    return [p for pid, p in found.items() if pid not in spared and _alive(p)]


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def kill_tree(tag: str | None, roots: Iterable[psutil.Process] = (), grace: float = KILL_GRACE_S) -> int:
    """End a tree (see :func:`members`): SIGTERM, then SIGKILL after ``grace`` seconds for what is
    left and for what was started meanwhile. Returns how many processes were signalled."""
    roots = list(roots)
    procs = members(tag, roots) if tag else [p for p in roots if _alive(p)]
    if not procs:
        return 0
    _signal_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    # A process may have forked between the snapshot and the signal: look again.
    late = members(tag, roots) if tag else []
    stubborn = [p for p in procs if _alive(p)] + late
    _signal_all(stubborn, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(_alive(p) for p in stubborn) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(procs) + len(late)


# -- lifelines -----------------------------------------------------------------------------------
def lifeline() -> tuple[int, int]:
    """A new lifeline: (read end, for the started process's ``pass_fds``; write end, kept)."""
    return os.pipe()  # both ends non-inheritable: no other child of ours gets a copy


def watch(on_lost: Callable[[], None], fd: int | None = None, parent: int | None = None) -> threading.Thread:
    """Call ``on_lost`` in a thread once the lifeline ``fd`` reaches its end, or, without one,
    once ``parent`` (default: the current parent) is no longer this process's parent."""

    pid = parent if parent is not None else os.getppid()  # now: the thread may start late

    def follow() -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                while os.read(fd, 1):
                    pass  # nothing is ever written; end of file is the message
        else:
            while os.getppid() == pid:
                time.sleep(POLL_S)
        on_lost()

    thread = threading.Thread(target=follow, name="nbflow-lifeline", daemon=True)
    thread.start()
    return thread


def inherited_lifeline() -> int | None:
    """The lifeline this process was started with (from ``NBFLOW_LIFELINE``), kept to itself."""
    value = os.environ.pop(LIFELINE_ENV, "")
    if not value.isdigit():
        return None
    fd = int(value)
    try:
        os.set_inheritable(fd, False)  # what this process starts must not keep it open
    except OSError:
        return None
    return fd


def orphan_exit(tag: str | None, grace: float) -> Callable[[], None]:
    """What a worker or child does when its starter is gone: interrupt its main thread (the
    notebook is cancelled and saved, its kernel stopped), and if that has not ended the process
    within ``grace`` seconds, end its tree and exit."""

    def lost() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(grace)
        kill_tree(tag)
        os._exit(1)

    return lost


def interruptible() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in this process, whatever it inherited: a
    background job of a shell starts with SIGINT ignored, and it would stay so."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then raise KeyboardInterrupt): starting a
    process must not be cut between its start and its owner recording it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread: nothing to defer
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Any] = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Received while held: handled now as the handler in place would have (a process that
    # ignores SIGINT, the way it was started, keeps ignoring it).
    for number in received:
        handler = previous[number]
        if callable(handler):
            handler(number, None)


def uninterruptible() -> None:
    """No more KeyboardInterrupt: the process is cleaning up, which an interrupt would cut short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def become_subreaper() -> bool:
    """Linux: orphans among this process's descendants are reparented to it, not to init."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


# -- the CLI's SIGTERM ---------------------------------------------------------------------------
class _Termination:
    received = False


def stop_on_sigterm() -> None:
    """SIGTERM stops this process as Ctrl-C does (KeyboardInterrupt in the main thread: the run
    is cancelled, its results written); a second SIGTERM ends it at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        _Termination.received = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def interruption() -> str:
    """What interrupted this process, in words for a reason line."""
    return "SIGTERM" if _Termination.received else "Ctrl-C"


def interrupted_exit_code() -> int:
    """143 (128 + SIGTERM) if SIGTERM stopped the run, else 130 (128 + SIGINT)."""
    return 128 + signal.SIGTERM if _Termination.received else 128 + signal.SIGINT


# -- the kernel's launcher -----------------------------------------------------------------------
def _socket_folder(argv: list[str]) -> Path | None:
    """The nbflow-made folder of the kernel's connection file (``-f FILE``), if it is one."""
    if "-f" not in argv[:-1]:
        return None
    folder = Path(argv[argv.index("-f") + 1]).parent
    return folder if folder.name.startswith("nbflow-kernel-") else None


def kernel_main(argv: list[str]) -> None:
    """``python -m nbflow.lifecycle MODULE ARGS...``: arm this kernel's lifeline, then run MODULE.

    On the lifeline's end the kernel ends its tree (what the notebook started) and itself."""
    # First: unshare(CLONE_NEWUSER) refuses a process with threads, and the lifeline's is one.
    sandbox.enter_as_ordered()
    fd = inherited_lifeline()
    # ipykernel polls its parent and exits the moment it is gone, which would cut our clean-up
    # short; for it, parent 1 means "a parent that never goes away": no polling, and no console
    # hints for a kernel started by hand.
    os.environ["JPY_PARENT_PID"] = "1"
    become_subreaper()
    tag = own_tag()

    folder = _socket_folder(argv)

    def lost() -> None:
        kill_tree(tag, psutil.Process().children(recursive=True))
        # Whoever made the kernel's folder is gone and will not remove it: its files (sockets, the
        # connection file with the kernel's key, its log) would stay in the temporary folder.
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(1)

    if fd is not None:
        watch(lost, fd=fd)
    # sys.path is left as ``python -m ipykernel_launcher`` would have it: the notebook's folder first.
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)



@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does (CANCELED, the kernel stopped, the notebook saved)
    instead of killing the process with the notebook half-written. Only where SIGTERM still has
    its default action, and only in the main thread (where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    kernel_main(sys.argv[1:])
