"""A Spark Connect session on the project's running cluster, and which server a process attached to.

A session retries an unanswered call only while the server process lives, then raises
:class:`~nbflow.errors.ClusterDied` naming the log, instead of pyspark's retries of ten minutes
and more. This module is imported inside notebook kernels; pyspark is imported by :func:`attach`
alone, when a notebook first uses Spark.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import ClusterDied
from .commands import HOST
from .processes import server_alive
from .state import ClusterState, read_token

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# An unanswered call (UNAVAILABLE) is retried while the server process lives, for this long at
# most; pyspark's own policy retries for 10 minutes and more, which is how a dead cluster hung runs.
UNAVAILABLE_BUDGET_S = 15.0
# How long a call cancelled by the server waits to see whether the server goes (see _retry_policy).
CANCELLED_GRACE_S = 3.0


def session_url(url: str, session_id: str) -> str:
    """``url`` with a ``session_id`` parameter: one Spark Connect session per attach."""
    if "/;" in url:
        return f"{url};session_id={session_id}"
    return f"{url.rstrip('/')}/;session_id={session_id}"


# The server this process last attached a session to (see attached()).
_ATTACHED: dict[str, Any] | None = None


def attached() -> dict[str, Any] | None:
    """The identity (:attr:`ClusterState.identity`) of the server this process last attached to.

    A warm kernel reports it, so that the pool hands the kernel out only while that server is
    the project's live one (see :func:`nbflow.cluster.server.is_live`).
    """
    return None if _ATTACHED is None else dict(_ATTACHED)


def died_message(state: ClusterState) -> str:
    """The one line a task fails with when the cluster under its session dies."""
    return f"the local cluster ({state.engine}, pid {state.pid}) died; its log: {state.log}"


def attach(state: ClusterState) -> SparkSession:
    """A new Spark Connect session on the cluster, with its own session id.

    The session reaches the server as its access requires (the gate's socket, or TCP, with the
    cluster's token where there is one), and retries a call the server does not answer only
    while the server's process lives, for UNAVAILABLE_BUDGET_S at most: then ClusterDied, one
    line naming the server and its log, instead of pyspark's retries of ten minutes and more.
    On Sail, ``spark.sql.warehouse.dir`` is set on the session (Sail's catalog is per session);
    the JVM server has it as a static conf already, and an external cluster has its own.
    """
    from pyspark.sql.connect.session import SparkSession as ConnectSession  # lazy: pyspark costs a second to import


    global _ATTACHED
    session_id = str(uuid.uuid4())
    # What pyspark's own builder sets for a remote session: pyspark.sql.functions and others
    # choose their Spark Connect implementation by it (without it F.col asserts a SparkContext).
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    if state.engine == "external":
        spark = ConnectSession.builder.remote(session_url(state.url, session_id)).create()
    else:
        spark = ConnectSession.builder.channelBuilder(_channel_builder(state, session_id)).create()
    # Before the first call: a session built with options would call the server under
    # pyspark's default policy, and hang on a dead one.
    spark.client.set_retry_policies([_retry_policy(state)])
    if state.engine == "sail":
        spark.conf.set("spark.sql.warehouse.dir", state.warehouse)
    _ATTACHED = state.identity
    return spark  # type: ignore[return-value]  # pyspark types the Connect session apart from the classic one


def _channel_builder(state: ClusterState, session_id: str) -> Any:
    """How a session reaches this cluster: the gate's socket or TCP, with the token if any."""
    import grpc  # lazy: with pyspark, only when a session is made
    from pyspark.sql.connect.client import DefaultChannelBuilder  # lazy: pyspark costs a second to import

    # The JVM engine checks Spark Connect's token; so did the gate of earlier nbflow versions (its
    # access line names the token), which may still run. Today's gate checks the peer's user.
    token = read_token(state) if state.access.startswith("token:") or "cluster token" in state.access else None
    target = f"unix:{state.socket}" if state.socket is not None else f"{HOST}:{state.port}"
    kind = grpc.LocalConnectionType.UDS if state.socket is not None else grpc.LocalConnectionType.LOCAL_TCP

    class LocalChannel(DefaultChannelBuilder):
        def toChannel(self) -> grpc.Channel:
            if state.socket is not None:
                # gRPC names a Unix socket's path as the HTTP/2 authority, which Sail's HTTP
                # server refuses (a protocol error on every call): name the local host instead.
                self.setChannelOption("grpc.default_authority", "localhost")
            if token is None:
                return self._insecure_channel(target)
            # Local credentials: no TLS on a connection that never leaves the machine, which
            # gRPC requires before it sends a bearer token.
            credentials = grpc.composite_channel_credentials(
                grpc.local_channel_credentials(kind), grpc.access_token_call_credentials(token))
            return self._secure_channel(target, credentials)

    return LocalChannel(f"sc://localhost/;session_id={session_id}")


def _retry_policy(state: ClusterState) -> Any:
    """pyspark's retry policy, bounded: UNAVAILABLE is retried while the server process lives,
    for UNAVAILABLE_BUDGET_S at most; then, or at once if the process is gone, ClusterDied. A
    call the server cancels is ClusterDied if the server exits within CANCELLED_GRACE_S."""
    import grpc  # lazy: with pyspark, only when a session is made
    from pyspark.sql.connect.client.retries import (  # lazy: pyspark costs a second to import
        DefaultPolicy,
        RetryPolicyState,
    )

    project = state.project

    class Attempts(RetryPolicyState):
        def __init__(self, policy: Any) -> None:
            super().__init__(policy)
            self._first_unavailable: float | None = None

        def next_attempt(self, exception: BaseException | None = None) -> int | None:
            if isinstance(exception, grpc.RpcError) and exception.code() == grpc.StatusCode.UNAVAILABLE:
                if state.pid is not None and not server_alive(state, project):
                    raise ClusterDied(died_message(state)) from None
                now = time.monotonic()
                if self._first_unavailable is None:
                    self._first_unavailable = now
                elif now - self._first_unavailable > UNAVAILABLE_BUDGET_S:
                    who = f"{state.engine}, pid {state.pid}" if state.pid is not None else state.url
                    raise ClusterDied(f"the local cluster ({who}) did not answer for {UNAVAILABLE_BUDGET_S:.0f} s; "
                                      f"its log: {state.log}") from None
            wait: int | None = super().next_attempt(exception)
            return wait

    class Bounded(DefaultPolicy):
        def __init__(self) -> None:
            super().__init__(max_retries=40, initial_backoff=50, backoff_multiplier=2.0, max_backoff=1000,
                             max_server_retry_delay=10_000)

        def can_retry(self, e: BaseException) -> bool:
            # The gate stops answering when Sail behind it dies: it cancels the calls in flight
            # (CANCELLED, not UNAVAILABLE) and exits a moment later. A cancel from a server
            # that then goes is the cluster dying; from one that stays, it is the call's own.
            if isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.CANCELLED and state.pid is not None:
                deadline = time.monotonic() + CANCELLED_GRACE_S
                while server_alive(state, project):
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
                raise ClusterDied(died_message(state)) from None
            answer: bool = super().can_retry(e)
            return answer

        def to_state(self) -> Any:
            return Attempts(self)

    return Bounded()
