"""A preloaded process that forks kernels and workers: ``python -m nbflow.kernel_zygote SOCKET``.

A kernel started the usual way pays for a Python interpreter, ipykernel, nbflow's runtime and
pyspark's Connect client, every time: about 1.5 s of CPU, most of a warm pool's cost on a small
machine. The zygote imports all of that once, then forks a new kernel on request: the child
starts from the imported modules (copy-on-write), takes the environment, folder, output files and
lifeline it is sent, and runs exactly what ``python -m nbflow.lifecycle ipykernel_launcher ...``
runs (:func:`nbflow.lifecycle.kernel_main`, which enters the sandbox first: a forked child has
one thread, as ``unshare`` wants). Nothing is shared between two kernels but the read-only
pages of their imports; each is a fresh process with a clean namespace.

The cluster's pool service starts one zygote for its workers (:mod:`nbflow.pool_service`) and
names its socket in ``NBFLOW_KERNEL_ZYGOTE``; :class:`nbflow.kernels.TreeKernelManager` asks it
for its kernels when that is set, and :class:`nbflow.pool.Worker` for worker processes (papermill
and nbclient are preloaded too, so a pool grows in milliseconds); both start their process the
usual way when the zygote cannot (:func:`spawn` raises ``OSError``). The zygote dies with the
service (``PR_SET_PDEATHSIG``). It reaps what it forked and keeps each exit status until asked
(``{"exit": pid}``), so a worker that was killed is reported as killed.

The wire: one connection per request. To fork, the client sends a JSON request (``kind``,
``argv``, ``env``, ``cwd``, and the names of the file descriptors attached with ``SCM_RIGHTS``:
stdin, stdout, stderr, lifeline); the zygote forks and answers ``{"pid": N}`` with a pidfd of the
child attached, which is how the client (not the child's parent) polls, waits for and signals it
(:class:`ForkedProcess`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import IO, Any

ZYGOTE_ENV = "NBFLOW_KERNEL_ZYGOTE"
# What a kernel imports before its first cell: ipykernel and its debugger, nbflow's runtime,
# pyspark's Connect client (with pandas and pyarrow) and what attaching a session needs.
PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "ipykernel_launcher", "nbflow.lifecycle", "nbflow.runtime.kernel", "nbflow.cluster.attach",
    "pyspark.sql.connect.session", "pyspark.sql.connect.functions", "matplotlib_inline.backend_inline",
    # ...and what a worker imports to run a task (nbflow.worker).
    "papermill", "nbflow.engine", "nbflow.task_process", "nbflow.worker",
)
# What each kind of child runs: ``python -m <module> ...``.
MODULES = {"kernel": "nbflow.lifecycle", "worker": "nbflow.worker"}
FDS = ("stdin", "stdout", "stderr", "lifeline")
EXITS_KEPT = 4096  # exit statuses not yet asked for (a pool asks for each of its workers')
SPAWN_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


# -- the client side ---------------------------------------------------------------------------
class ForkedProcess:
    """A kernel the zygote forked, as jupyter_client's provisioner handles its process
    (``poll``, ``wait``, ``send_signal``, ``kill``, ``terminate``): through a pidfd, since this
    process is not its parent. Its exit code is not known here: 0 after an ask to stop, else 1."""

    def __init__(self, pid: int, pidfd: int, zygote: str) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._zygote = zygote
        self.returncode: int | None = None
        self._signalled = False
        # A worker's pipes, as subprocess.Popen has them (set by the caller); a kernel has none.
        self.stdin: IO[str] | None = None
        self.stdout: IO[str] | None = None
        self.stderr: IO[str] | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd >= 0 and select.select([self._pidfd], [], [], 0)[0]:
            self.returncode = _exit_status(self._zygote, self.pid, 0 if self._signalled else 1)
            self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(MODULES["worker"], timeout or 0)
            select.select([self._pidfd], [], [], left)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            self._signalled = self._signalled or signum in (signal.SIGTERM, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self._close()


def spawn(socket_path: str, kind: str, argv: list[str], env: dict[str, str], cwd: str | None,
          fds: dict[str, int]) -> ForkedProcess:
    """Ask the zygote at ``socket_path`` for a ``kind`` process (``kernel``, ``worker``) running
    ``argv`` with ``fds`` (by name: stdin, stdout, stderr, lifeline) as its own; ``OSError`` if
    it cannot make one (the caller then starts it the usual way)."""
    if argv[1:3] != ["-m", MODULES.get(kind, "")]:
        raise OSError(f"the zygote starts nbflow kernels and workers only, not {argv[:3]}")
    names = [name for name in FDS if name in fds]
    request = {"kind": kind, "argv": argv, "env": env, "cwd": cwd, "python": os.path.realpath(argv[0]),
               "fds": names}
    answer, received = _ask(socket_path, request, [fds[name] for name in names])
    if "pid" not in answer or not received:
        for fd in received:
            os.close(fd)
        raise OSError(f"the kernel zygote could not fork a {kind}: {answer.get('error') or 'no answer'}")
    return ForkedProcess(int(answer["pid"]), received[0], socket_path)


def _ask(socket_path: str, request: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SPAWN_TIMEOUT_S)
        sock.connect(socket_path)
        socket.send_fds(sock, [json.dumps(request).encode()], fds)
        sock.shutdown(socket.SHUT_WR)
        message, received, _flags, _addr = socket.recv_fds(sock, 65536, 1)
    try:
        answer = json.loads(message or b"{}")
    except ValueError:
        answer = {}
    return (answer if isinstance(answer, dict) else {}), received


def _exit_status(socket_path: str, pid: int, unknown: int) -> int:
    """The exit status of a child of the zygote that has ended, as ``Popen.returncode`` gives it
    (negative: the signal that killed it); ``unknown`` if the zygote cannot say."""
    for _ in range(20):  # it reaps on SIGCHLD, a moment after the pidfd says the child is gone
        try:
            answer, _ = _ask(socket_path, {"exit": pid}, [])
        except OSError:
            return unknown
        if answer.get("code") is not None:
            return int(answer["code"])
        time.sleep(0.01)
    return unknown


# -- the zygote --------------------------------------------------------------------------------
def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a kernel that needs it imports it itself (and reports what fails)
            print(f"nbflow-zygote: not preloaded: {name}: {exc}", file=sys.stderr, flush=True)


_EXITS: dict[int, int] = {}  # pid -> exit status (Popen's convention), until asked for


def _reap(signum: int, frame: Any) -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid <= 0:
                break
            _EXITS[pid] = os.waitstatus_to_exitcode(status)
            while len(_EXITS) > EXITS_KEPT:
                _EXITS.pop(next(iter(_EXITS)))


def _name(name: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the kernel or worker the request describes. Never returns."""
    code = 1
    try:
        os.setsid()  # a session of its own, as jupyter_client starts kernels
        # Its name in top and `ps -o comm` (its command line stays the zygote's).
        _name(f"nbflow-{request.get('kind', 'kernel')}")
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        given = dict(zip(request.get("fds") or [], fds, strict=True))
        if "stdin" not in given:
            given["stdin"] = os.open(os.devnull, os.O_RDONLY)
        for name, target in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
            if name in given:
                os.dup2(given[name], target)
                os.close(given[name])
        env = dict(request["env"])
        if "lifeline" in given:
            lifeline = given["lifeline"]
            os.set_inheritable(lifeline, True)
            env["NBFLOW_LIFELINE"] = str(lifeline)  # its number here, not the client's
        os.environ.clear()
        os.environ.update(env)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m` puts the starting folder first
        if "numpy" in sys.modules:  # forked children would all draw the same "random" numbers
            sys.modules["numpy"].random.seed()
        # What `python -m MODULE ARGS...` runs (its imports are preloaded): the kernel's launcher
        # (nbflow.lifecycle) or a worker (nbflow.worker), by name, as the interpreter would.
        sys.argv = [request["argv"][2], *request["argv"][3:]]
        runpy.run_module(MODULES[request.get("kind", "kernel")], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> int:
    _die_with_parent()
    # As the kernel spec sets it for kernels: debugpy's import warns about frozen modules otherwise.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    _preload()
    python = os.path.realpath(sys.executable)
    signal.signal(signal.SIGCHLD, _reap)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old_mask = os.umask(0o177)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
    finally:
        os.umask(old_mask)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        fds: list[int] = []
        try:
            message, fds, _flags, _addr = socket.recv_fds(connection, 1 << 20, len(FDS))
            request = json.loads(message)
            if "exit" in request:  # a client asks how a child it was given ended
                connection.sendall(json.dumps({"code": _EXITS.pop(int(request["exit"]), None)}).encode())
                continue
            if request.get("kind", "kernel") not in MODULES:
                raise ValueError(f"cannot start a {request.get('kind')!r}")
            if len(request.get("fds") or []) != len(fds):
                raise ValueError("the file descriptors sent are not those named")
            if request.get("python") != python:
                raise ValueError(f"kernels of another interpreter ({request.get('python')})")
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                _child(request, fds)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(connection, [json.dumps({"pid": pid}).encode()], [pidfd])
            finally:
                os.close(pidfd)
        except Exception as exc:  # one bad request must not end the zygote
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"error": str(exc)}).encode())
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            connection.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nbflow.kernel_zygote SOCKET", file=sys.stderr)
        return 2
    return serve(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
