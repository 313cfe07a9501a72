"""The gate of the local Sail cluster: ``python -m nbflow.cluster.gate --cluster-dir D --socket S
[--volumes V --dbfs F --workspace W --sandbox-root R] -- SAIL...``.

Sail's Spark Connect server has no authentication and listens only on TCP, where every local
process can reach it. The gate closes that door:

1. it moves itself into a new user and network namespace (``unshare``, no privileges needed where
   unprivileged user namespaces are enabled), whose loopback no process outside can reach;
2. it starts the Sail server there, on that private loopback;
3. it listens on a Unix socket (mode 0600, in a folder of mode 0700: only this user can open it),
   checks that each connection comes from this user (the kernel's ``SO_PEERCRED``), and relays
   its bytes to Sail and back. Unix path sockets live in the file system, not the network
   namespace, so kernels reach it from outside.

The gate relays bytes, not gRPC calls: it needs no token, decodes nothing, and costs little CPU
beside Sail's (decoding every call in Python cost a fifth of Sail's CPU on a parallel plan).

The gate is the process nbflow records as the cluster (its process group holds Sail too). It
exits when Sail does, so a dead Sail is a dead cluster; Sail is killed if the gate is.

Exit status 75 (EX_TEMPFAIL) before ``ready`` means the namespaces are not available here; the
last line of the log says why, and nbflow then starts Sail without the gate. ``D`` (the
cluster's folder) is the working folder and tells this project's gate from another's.

The gate starts no thread before it has isolated itself: ``unshare(CLONE_NEWUSER)`` refuses a
process that runs threads.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from .. import sandbox

CANNOT_ISOLATE = 75
INNER_PORT = 15002  # Sail's port inside the private namespace: nothing else listens there
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class CannotIsolate(Exception):
    """The namespaces the gate needs are not available (no privilege, not Linux, disabled)."""


def _say(line: str) -> None:
    print(f"nbflow-gate: {line}", flush=True)


def isolate() -> None:
    """Move this (single-threaded) process into new user and network namespaces, loopback up."""
    if not sys.platform.startswith("linux"):
        raise CannotIsolate(f"network namespaces are Linux only (this is {sys.platform})")
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise CannotIsolate(f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {errno.errorcode.get(code, code)} "
                            f"({os.strerror(code)}); unprivileged user namespaces may be disabled "
                            "(kernel.unprivileged_userns_clone, user.max_user_namespaces, a container's seccomp)")
    # The same ids inside as outside: files the server writes belong to the user, as before.
    try:
        with open("/proc/self/setgroups", "w") as handle:
            handle.write("deny")
        with open("/proc/self/uid_map", "w") as handle:
            handle.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as handle:
            handle.write(f"{gid} {gid} 1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sh22x", b"lo", 0)
            flags = struct.unpack("16sh22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))
    except OSError as exc:
        raise CannotIsolate(f"could not set up the private network namespace: {exc}") from None


def _enter_sandbox(root: str, volumes: str, dbfs: str, workspace: str) -> None:
    """Sail's /Volumes, /dbfs and /Workspace are the project's folders, as in its kernels: a
    mount namespace in the gate's own user namespace (its new root on ``root``).
    Without it the gate still guards the network; the log says what Sail's paths then are."""
    mounts = {sandbox.VOLUMES: volumes, sandbox.DBFS: dbfs, sandbox.WORKSPACE: workspace}
    plan = sandbox.Layout(tuple(sorted(mounts.items())), root)
    reason = sandbox.enter(plan, new_user_namespace=False)
    if reason is not None:
        _say(f"warning: no sandbox for the sail server ({reason}): paths under /Volumes, /dbfs and /Workspace "
             "in its SQL are the machine's own")


def _die_with_parent() -> None:
    # Runs in the Sail child before exec: if the gate is killed (even by SIGKILL), so is Sail.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_accepting(port: int, server: subprocess.Popen[bytes]) -> int | None:
    """None once the server listens; its exit code if it exits first (nbflow times the start)."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return None
        except OSError:
            pass
        if server.poll() is not None:
            return server.returncode
        time.sleep(0.05)


# A pipe of 256 KiB moves an Arrow batch in a few splices rather than one per 64 KiB page; pipe
# memory counts against a per-user limit (fs.pipe-user-pages-soft, 64 MiB by default) shared
# with every process of the user, so not more: two pipes per connection.
_PIPE_BYTES = 1 << 18
_LISTEN_BACKLOG = 128
# accept() errors that pass: the connection waits in the backlog while the gate retries.
_SHORT_OF = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket, as the kernel attests it."""
    _pid, uid, _gid = struct.unpack("iII", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("iII")))
    return int(uid)


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # past the user's pipe memory, the default size works
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return read_end, write_end


def _splice(source: socket.socket, target: socket.socket, pipe: tuple[int, int]) -> None:
    """Move bytes from ``source`` to ``target`` until ``source`` ends, then end ``target``'s writing.

    Bytes, not gRPC messages: the kernel moves them through a pipe (``splice``) without copying
    them into Python, where decoding every call cost the gate more CPU than Sail's own.
    """
    read_end, write_end = pipe
    try:
        while True:
            moved = os.splice(source.fileno(), write_end, _PIPE_BYTES)
            if moved == 0:
                break
            while moved:
                moved -= os.splice(read_end, target.fileno(), moved)
    except OSError:
        # A side reset or gone: wake the other direction too (its splice waits on these sockets).
        for side in (source, target):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)  # a clean end: passed on, the other direction goes on


def _connect(client: socket.socket) -> None:
    """Relay one client connection to Sail, both ways, until both sides have finished; whatever
    fails on the way, every socket and pipe is closed, so the client sees the end."""
    pipes: list[tuple[int, int]] = []
    backend: socket.socket | None = None
    upstream: threading.Thread | None = None
    try:
        backend = socket.create_connection(("127.0.0.1", INNER_PORT))
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # gRPC's small frames go at once
        pipes = [_pipe(), _pipe()]
        upstream = threading.Thread(target=_splice, args=(client, backend, pipes[0]), daemon=True)
        upstream.start()
        _splice(backend, client, pipes[1])
    except (OSError, RuntimeError) as exc:  # RuntimeError: no thread to be had
        _say(f"warning: a connection failed: {exc}")
        for side in (client, backend):
            if side is not None:
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
    finally:
        if upstream is not None and upstream.ident is not None:
            upstream.join()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        client.close()
        if backend is not None:
            backend.close()


def _accept(listener: socket.socket, uid: int, sail: subprocess.Popen[bytes] | None = None) -> None:
    """Relay every connection of this user to Sail; refuse others' (the socket's mode already
    keeps them out: this holds even if someone loosens it). It never stops while the listener
    is open: a gate that cannot accept any more stops Sail, and so the cluster, rather than
    stay up and deaf (kernels would wait on it)."""
    try:
        while True:
            try:
                client, _ = listener.accept()
            except OSError as exc:
                if listener.fileno() == -1 or exc.errno in (errno.EBADF, errno.EINVAL):
                    return  # closed: the gate is stopping
                if exc.errno in _SHORT_OF:
                    _say(f"warning: cannot accept a connection now ({exc}); retrying")
                    time.sleep(0.1)
                continue  # ECONNABORTED and the like: that connection's own trouble
            try:
                peer = peer_uid(client)
                if peer != uid:
                    _say(f"refused a connection from uid {peer}: the cluster is user {uid}'s alone")
                    client.close()
                    continue
                threading.Thread(target=_connect, args=(client,), daemon=True).start()
            except (OSError, RuntimeError) as exc:
                _say(f"warning: dropped a connection: {exc}")
                client.close()
    except BaseException as exc:
        _say(f"the gate stops accepting ({exc!r}): stopping the sail server")
        if sail is not None:
            sail.terminate()
        raise


def _serve(socket_file: str, sail: subprocess.Popen[bytes]) -> int:
    """Answer on the socket until Sail exits; Sail's exit code."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_file)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o077)  # no moment when others may open the socket
    try:
        listener.bind(socket_file)
    finally:
        os.umask(old_mask)
    os.chmod(socket_file, 0o600)  # connect() needs write permission: the owner's alone
    listener.listen(_LISTEN_BACKLOG)
    threading.Thread(target=_accept, args=(listener, os.getuid(), sail), daemon=True).start()
    _say(f"ready on unix:{socket_file}")
    code = sail.wait()
    listener.close()
    return code


def _raise_file_limit() -> None:
    # Each connection holds six descriptors (two sockets, two pipes): a soft limit of 1024
    # would cap the gate near 170 connections; the hard limit is the user's to give.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbflow.cluster.gate")
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--socket", required=True)
    # The project's folders that are /Volumes, /dbfs and /Workspace for Sail (see nbflow.sandbox).
    parser.add_argument("--volumes")
    parser.add_argument("--dbfs")
    parser.add_argument("--workspace")
    parser.add_argument("--sandbox-root")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = [arg for arg in args.command if arg != "--"] if args.command[:1] == ["--"] else args.command
    try:
        isolate()  # first: unshare(CLONE_NEWUSER) refuses a process that has threads
    except CannotIsolate as exc:
        _say(f"cannot isolate: {exc}")
        return CANNOT_ISOLATE
    _raise_file_limit()
    if args.volumes and args.dbfs and args.workspace and args.sandbox_root:
        _enter_sandbox(args.sandbox_root, args.volumes, args.dbfs, args.workspace)

    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            sail.send_signal(signal.SIGTERM)

    # preexec_fn is safe here: no thread has started yet (the relays start below).
    sail = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _say(f"sail server pid {sail.pid} on 127.0.0.1:{INNER_PORT} in a private network namespace")
    failed = _wait_accepting(INNER_PORT, sail)
    if failed is not None:
        # Sail's own last words are the last line of the log; its exit code is the gate's.
        return 1 if failed < 0 else failed

    code = _serve(args.socket, sail)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    if stopping:
        _say("stopped")
        return 0
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    _say(f"the sail server (pid {sail.pid}) ended ({how}): the cluster is down")
    return 1


if __name__ == "__main__":
    sys.exit(main())
