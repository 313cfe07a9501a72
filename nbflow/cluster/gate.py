"""The gate of the local Sail cluster: ``python -m nbflow.cluster.gate --cluster-dir D --socket S
--token-file T [--volumes V --dbfs F --workspace W --sandbox-root R] -- SAIL...``.

Sail's Spark Connect server has no authentication and listens only on TCP, where every local
process can reach it. The gate closes that door:

1. it moves itself into a new user and network namespace (``unshare``, no privileges needed where
   unprivileged user namespaces are enabled), whose loopback no process outside can reach;
2. it starts the Sail server there, on that private loopback;
3. it answers Spark Connect on a Unix socket (mode 0600, in a folder of mode 0700: only this user
   can open it) and forwards each call to Sail, after checking that the call carries the
   cluster's token (``authorization: Bearer <token>``, the token read from ``T``, mode 0600).
   Unix path sockets live in the file system, not the network namespace, so kernels reach it
   from outside.

The gate is the process nbflow records as the cluster (its process group holds Sail too). It
exits when Sail does, so a dead Sail is a dead cluster; Sail is killed if the gate is.

Exit status 75 (EX_TEMPFAIL) before ``ready`` means the namespaces are not available here; the
last line of the log says why, and nbflow then starts Sail without the gate. ``D`` (the
cluster's folder) is the working folder and tells this project's gate from another's.

This module imports only the standard library and :mod:`nbflow.sandbox` before it has isolated
itself: ``unshare(CLONE_NEWUSER)`` refuses a process that runs threads, and grpc may start some.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import fcntl
import hmac
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import sandbox

if TYPE_CHECKING:
    import grpc

CANNOT_ISOLATE = 75
INNER_PORT = 15002  # Sail's port inside the private namespace: nothing else listens there
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
# Spark Connect sends Arrow batches up to 128 MiB; the gate must pass whatever the client accepts.
_NO_DEADLINE = 10**8  # seconds: what grpc reports for a call without a deadline is far above this
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


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


# How each Spark Connect method streams. Any kind would do on the wire (a stream of one is a
# unary message), but a unary request handled as a stream costs a thread and a hop per call:
# the small query went from 7 to 22 ms that way.
_RESPONSE_STREAMS = frozenset({"ExecutePlan", "ReattachExecute"})
_REQUEST_STREAMS = frozenset({"AddArtifacts"})


def _forwarder(backend: grpc.aio.Channel, token: str) -> grpc.GenericRpcHandler:
    """Every call forwarded as bytes once it shows the cluster's token; refused without it."""
    import grpc  # lazy: imported once isolated (see the module doc)

    expected = f"Bearer {token}".encode()

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "nbflow's local cluster admits only nbflow's kernels and commands (no valid cluster token)")

    def options(context: grpc.aio.ServicerContext, metadata: list[tuple[str, Any]]) -> dict[str, Any]:
        remaining = context.time_remaining()
        # No deadline shows as a huge number (or None); only a real one is passed on.
        timeout = remaining if remaining is not None and remaining < _NO_DEADLINE else None
        return {"metadata": metadata, "timeout": timeout}

    async def relay_failure(call: Any, context: grpc.aio.ServicerContext) -> None:
        # Spark's errors travel in the trailers (grpc-status-details-bin): pass them on.
        context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
        await context.abort(await call.code(), await call.details() or "")

    class Forward(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            metadata: Sequence[tuple[str, Any]] = details.invocation_metadata or ()
            auth = next((str(v) for k, v in metadata if k == "authorization"), "")
            name = details.method.rsplit("/", 1)[-1]
            request_streams, response_streams = name in _REQUEST_STREAMS, name in _RESPONSE_STREAMS
            if not hmac.compare_digest(auth.encode(), expected):
                if request_streams:
                    return grpc.stream_unary_rpc_method_handler(refuse)
                if response_streams:
                    return grpc.unary_stream_rpc_method_handler(refuse)
                return grpc.unary_unary_rpc_method_handler(refuse)
            # The token stays here: Sail does not need it and must not log it.
            passed = [(k, v) for k, v in metadata if k != "authorization" and k != "user-agent"
                      and not k.startswith("grpc-")]

            async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                call_backend = (backend.stream_stream if request_streams else backend.unary_stream)(details.method)
                call = call_backend(request, **options(context, passed))
                try:
                    async for response in call:
                        yield response
                except grpc.RpcError:
                    await relay_failure(call, context)
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))

            async def single(request: Any, context: grpc.aio.ServicerContext) -> bytes:
                call_backend = (backend.stream_unary if request_streams else backend.unary_unary)(details.method)
                call = call_backend(request, **options(context, passed))
                try:
                    response = await call
                except grpc.RpcError:
                    await relay_failure(call, context)
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                return bytes(response)

            if response_streams and request_streams:
                return grpc.stream_stream_rpc_method_handler(streamed)
            if response_streams:
                return grpc.unary_stream_rpc_method_handler(streamed)
            if request_streams:
                return grpc.stream_unary_rpc_method_handler(single)
            return grpc.unary_unary_rpc_method_handler(single)

    return Forward()


async def _serve(socket_file: str, token: str, sail: subprocess.Popen[bytes]) -> int:
    """Answer on the socket until Sail exits; Sail's exit code."""
    import grpc  # lazy: imported once isolated (see the module doc)

    backend = grpc.aio.insecure_channel(f"127.0.0.1:{INNER_PORT}", options=_UNLIMITED)
    server = grpc.aio.server(handlers=[_forwarder(backend, token)], options=_UNLIMITED)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_file)
    old_mask = os.umask(0o077)  # no moment when others may open the socket
    try:
        server.add_insecure_port(f"unix:{socket_file}")
    finally:
        os.umask(old_mask)
    os.chmod(socket_file, 0o600)  # connect() needs write permission: the owner's alone
    await server.start()
    _say(f"ready on unix:{socket_file}")
    code: int = await asyncio.get_running_loop().run_in_executor(None, sail.wait)
    await server.stop(0)
    await backend.close()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbflow.cluster.gate")
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--token-file", required=True)
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
    if args.volumes and args.dbfs and args.workspace and args.sandbox_root:
        _enter_sandbox(args.sandbox_root, args.volumes, args.dbfs, args.workspace)
    with open(args.token_file, encoding="ascii") as handle:
        token = handle.read().strip()

    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            sail.send_signal(signal.SIGTERM)

    # preexec_fn is safe here: no thread has started yet (grpc is imported below).
    sail = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _say(f"sail server pid {sail.pid} on 127.0.0.1:{INNER_PORT} in a private network namespace")
    failed = _wait_accepting(INNER_PORT, sail)
    if failed is not None:
        # Sail's own last words are the last line of the log; its exit code is the gate's.
        return 1 if failed < 0 else failed

    code = asyncio.run(_serve(args.socket, token, sail))
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
