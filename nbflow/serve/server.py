"""``nbflow serve``: a local Databricks workspace on 127.0.0.1 that answers the REST API.

The server speaks the request and response shapes, status codes and error bodies of the real
API, so the official ``databricks-sdk`` works against it unchanged. Every request needs the bearer
token (401 ``UNAUTHENTICATED`` without one, 403 ``PERMISSION_DENIED`` for a wrong one), checked
before any of the body is read; bodies are capped (413), and a client that stalls is cut off
(408), so a client without the token costs the server its headers only. The workspace's state
lives under ``<project>/.nbflow/workspace/`` and survives restarts.

This module is the HTTP plumbing and the routes; :mod:`nbflow.serve.workspace_store` keeps the
objects.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..cluster import server as cluster_server
from ..project import workspace_dir, workspace_root
from .api_errors import ApiError
from .clusters_store import ClustersStore, node_types, spark_versions
from .jobs_store import JobsStore
from .schedules import ScheduleRunner
from .workspace_store import MAX_IMPORT_BYTES, WorkspaceStore

log = logging.getLogger("nbflow.serve")
# The largest body read: a Workspace import of the API's 10 MB limit, base64-encoded, plus the JSON
# envelope, so that such an import meets its own limit (MAX_NOTEBOOK_SIZE_EXCEEDED), not this one.
MAX_REQUEST_BYTES = 4 * -(-MAX_IMPORT_BYTES // 3) + 2**16
# How long a client may leave the server waiting for its next bytes (request line, headers, body)
# before the connection is closed: a stalled client must not hold a thread for ever.
REQUEST_TIMEOUT_S = 30.0
# After an early refusal (401, 413...), how much of an unread body is discarded, and for how long,
# so that the client reads the refusal rather than a reset connection. Discarded, never kept.
DRAIN_BYTES = MAX_REQUEST_BYTES
DRAIN_S = 2.0
DISCOVERY_PATH = "/.well-known/databricks-config"
WORKSPACE_ID = "1"

Route = Callable[["Workspace", dict[str, str], dict[str, Any]], Any]
ROUTES: dict[tuple[str, str], Route] = {}


def route(method: str, *paths: str) -> Callable[[Route], Route]:
    def register(func: Route) -> Route:
        for path in paths:
            ROUTES[(method, path)] = func
        return func

    return register


class Raw:
    """A response that is bytes, not JSON (``export`` with ``direct_download``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class Workspace:
    """What the routes work on: the workspace objects, the clusters, the jobs and their runs."""

    def __init__(self, project: Path, cluster_engine: str = "auto") -> None:
        self.project = project
        self.cluster_engine = cluster_engine
        self.root = workspace_dir(project)
        self.store = WorkspaceStore(self.root, workspace_root(project))
        # The identity of the local cluster this server started, if it did (see close()).
        self._started_cluster: dict[str, Any] | None = None
        self.clusters = ClustersStore(self.root, self._start_cluster)
        self.jobs = JobsStore(self.root, self.store, self.clusters, project, cluster_engine)
        self.schedules = ScheduleRunner(self.jobs.scheduled, self.jobs.fire_schedule)
        self.schedules.start()

    def close(self) -> None:
        """Stop firing schedules and cancel the runs still going (their workers and kernels stop);
        then stop the local cluster (its server, its warm kernels) if this server started it."""
        self.schedules.stop()
        self.jobs.stop()
        if self._started_cluster is not None:
            current = cluster_server.status(self.project)
            if current is not None and current.identity == self._started_cluster:
                cluster_server.stop(self.project)

    def _start_cluster(self) -> None:
        running = cluster_server.status(self.project)
        state = cluster_server.ensure_running(self.project, self.cluster_engine)
        if running is None and state.pid is not None:
            self._started_cluster = state.identity  # stopped with this server (a later one is not ours)


class WorkspaceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, project: Path, token: str, host: str = "127.0.0.1", port: int = 0,
                 cluster_engine: str = "auto", request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not token:
            raise ValueError("a token is required")
        _forget_token(token)  # before anything is started that would inherit it
        self.token = token
        self.request_timeout = request_timeout
        super().__init__((host, port), _Handler)  # first: a port taken starts nothing
        try:
            self.workspace = Workspace(project, cluster_engine)
        except BaseException:
            self.server_close()
            raise

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests, embedding); :meth:`stop` ends it."""
        thread = threading.Thread(target=self.serve_forever, name="nbflow-serve", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop answering, cancel the runs still going (their workers and kernels stop too)."""
        self.shutdown()
        self.server_close()
        self.workspace.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or stalled is one line in the log; anything else is a defect."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # ConnectionResetError, BrokenPipeError, TimeoutError...
            log.warning("connection from %s ended: %s", _peer(client_address), _why(error))
        else:
            log.exception("request from %s failed", _peer(client_address))


def _forget_token(token: str) -> None:
    """Take the token out of this process's environment.

    Every process the server starts inherits that environment: the workers, their kernels (so
    the notebooks, which could print or save it), a notebook's children, the Spark server. Gone:
    ``NBFLOW_SERVE_TOKEN``, and any variable whose value is the token (the user exported the
    ``DATABRICKS_TOKEN`` line the server printed, then restarted it). Only exact values: a short
    token must not take ``PATH`` with it.
    """
    for name, value in list(os.environ.items()):
        if name == "NBFLOW_SERVE_TOKEN" or value == token:
            del os.environ[name]


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error.strerror or error}" if isinstance(error, OSError) else str(error)


class _Refusal(Exception):
    """An answer given before the body is read: the connection closes after it."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    server: WorkspaceServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Every read and write on the connection waits at most this (the server's setting).
        self.connection.settimeout(self.server.request_timeout)

    def handle_expect_100(self) -> bool:
        # "100 Continue" only for a body that will be read: a refused client (curl) sends none.
        try:
            if (self.command, urlsplit(self.path).path) != ("GET", DISCOVERY_PATH):
                self._authenticate()
            self._length()
        except _Refusal as refusal:
            self._refuse(refusal.error)
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry no token (it is a header); they go to the log, not to stderr.
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            # Nothing of the body is read before the request is known to be allowed and small
            # enough: a client without the token costs the headers, whatever it sends after.
            if (method, url.path) == ("GET", DISCOVERY_PATH):
                # Public on a real workspace too: the SDK reads it before it authenticates.
                self._expect_no_body()
                self._send(200, {"oidc_endpoint": f"{self.server.url}/oidc", "workspace_id": WORKSPACE_ID})
                return
            self._authenticate()
            raw = self._read_body()
            handler = ROUTES.get((method, url.path.rstrip("/")))
            if handler is None:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {url.path}'")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            query["__api__"] = url.path.split("/")[2] if url.path.count("/") > 2 else ""
            result = handler(self.server.workspace, query, self._body(raw))
        except _Refusal as refusal:
            self._refuse(refusal.error)
        except ApiError as exc:
            self._send(exc.status, exc.body())
        except Exception as exc:  # a defect answers 500 in the API's shape, never a dropped connection
            log.exception("%s %s failed", method, url.path)
            self._send(500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})
        else:
            self._send(200, result if result is not None else {})

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization") or ""
        if not header:
            raise _Refusal(ApiError(401, "UNAUTHENTICATED",
                                    "No access token: send the header 'Authorization: Bearer <token>'"))
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.server.token.encode()):
            raise _Refusal(ApiError(403, "PERMISSION_DENIED", "Invalid access token."))

    def _length(self) -> int:
        """The body's announced size, checked: what may be read, never more."""
        if self.headers.get("Transfer-Encoding"):
            raise _Refusal(ApiError(411, "LENGTH_REQUIRED",
                                    "Send the request body with a Content-Length header, not chunked"))
        given = (self.headers.get("Content-Length") or "0").strip()
        if not given.isdigit():  # "-1" (read to the end of the stream) is refused with the rest
            raise _Refusal(ApiError(400, "MALFORMED_REQUEST", f"Invalid Content-Length: {given[:40]!r}"))
        length = int(given)
        if length > MAX_REQUEST_BYTES:
            raise _Refusal(ApiError(413, "REQUEST_ENTITY_TOO_LARGE",
                                    f"The request body ({length} bytes) is over nbflow serve's limit of "
                                    f"{MAX_REQUEST_BYTES} bytes (a 10 MB import, base64-encoded, and its envelope)"))
        return length

    def _expect_no_body(self) -> None:
        if self._length():  # left unread, it would be taken for the next request on the connection
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = self._length()
        if not length:
            return b""
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            log.warning("connection from %s ended: the request body stalled for %g s",
                        self.address_string(), self.server.request_timeout)
            raise _Refusal(ApiError(408, "REQUEST_TIMEOUT", f"The request body did not arrive within "
                                    f"{self.server.request_timeout:g} s")) from None
        if len(raw) < length:
            raise _Refusal(ApiError(400, "MALFORMED_REQUEST",
                                    f"The request body ended after {len(raw)} of {length} bytes"))
        return raw

    def _refuse(self, error: ApiError) -> None:
        """Answer, then close: what is left of the body is discarded, for a short while, so that
        the client sees this answer instead of a connection reset; none of it is kept."""
        self.close_connection = True
        if not self._send(error.status, error.body(), close=True):
            return
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(DRAIN_S)
            deadline, left = time.monotonic() + DRAIN_S, DRAIN_BYTES
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(left, 2**16))
                if not chunk:
                    break
                left -= len(chunk)

    def _body(self, raw: bytes) -> dict[str, Any]:
        kind = self.headers.get("Content-Type") or ""
        if kind.startswith("multipart/form-data"):
            return _multipart(kind, raw)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "MALFORMED_REQUEST", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "The request body must be a JSON object")
        return body

    def _send(self, status: int, payload: Any, close: bool = False) -> bool:
        """Write the response; False (and one line in the log) if the client is gone."""
        if isinstance(payload, Raw):
            data, kind = payload.data, "application/octet-stream"
        else:
            data, kind = json.dumps(payload).encode("utf-8"), "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            self.close_connection = True
            log.warning("connection from %s ended before the response was sent: %s",
                        self.address_string(), _why(exc))
            return False
        return True


def _multipart(kind: str, raw: bytes) -> dict[str, Any]:
    """The fields of a multipart/form-data body (what ``workspace.upload`` sends): text or bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {kind}\r\n\r\n".encode("latin-1") + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        fields[name] = data if part.get_filename() or name == "content" else data.decode("utf-8")
    return fields


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- Workspace API (/api/2.0/workspace) ------------------------------------------------------------
@route("POST", "/api/2.0/workspace/mkdirs")
def _mkdirs(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    ws.store.mkdirs(body.get("path"))
    return {}


@route("POST", "/api/2.0/workspace/import")
def _import(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    content = body.get("content")
    if isinstance(content, str):
        try:
            content = base64.b64decode(content, validate=True)
        except ValueError:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "content must be base64-encoded") from None
    if not isinstance(content, bytes):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "content is required")
    ws.store.import_(body.get("path"), content, body.get("format"), body.get("language"),
                     _flag(body.get("overwrite")))
    return {}


@route("GET", "/api/2.0/workspace/export")
def _export(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> Any:
    data, file_type = ws.store.export(query.get("path"), query.get("format"))
    if _flag(query.get("direct_download")):
        return Raw(data)
    return {"content": base64.b64encode(data).decode("ascii"), "file_type": file_type}


@route("GET", "/api/2.0/workspace/get-status")
def _get_status(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.store.status(query.get("path"))


@route("GET", "/api/2.0/workspace/list")
def _list(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    objects = ws.store.list(query.get("path"))
    return {"objects": objects} if objects else {}


@route("POST", "/api/2.0/workspace/delete")
def _delete(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    ws.store.delete(body.get("path"), _flag(body.get("recursive")))
    return {}


# -- Clusters API (/api/2.1/clusters; 2.0 answers the same) ----------------------------------------
def _clusters(op: str) -> tuple[str, str]:
    return f"/api/2.0/clusters/{op}", f"/api/2.1/clusters/{op}"


@route("POST", *_clusters("create"))
def _cluster_create(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return {"cluster_id": ws.clusters.create(body)}


@route("GET", *_clusters("get"))
def _cluster_get(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.clusters.get(query.get("cluster_id"))


@route("GET", *_clusters("list"))
def _cluster_list(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    clusters = ws.clusters.list()
    return {"clusters": clusters} if clusters else {}


# The calls that act on one cluster and answer {}: operation -> what it does.
_CLUSTER_ACTIONS: dict[str, Callable[[Workspace, dict[str, Any]], None]] = {
    "start": lambda ws, body: ws.clusters.start(body.get("cluster_id")),
    "restart": lambda ws, body: ws.clusters.restart(body.get("cluster_id")),
    "edit": lambda ws, body: ws.clusters.edit(body),
    "delete": lambda ws, body: ws.clusters.delete(body.get("cluster_id")),
    "permanent-delete": lambda ws, body: ws.clusters.delete(body.get("cluster_id"), permanent=True),
}
def _acting(action: Callable[[Workspace, dict[str, Any]], None]) -> Route:
    def handler(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        action(ws, body)
        return {}

    return handler


for _op, _action in _CLUSTER_ACTIONS.items():
    route("POST", *_clusters(_op))(_acting(_action))


@route("GET", *_clusters("spark-versions"))
def _spark_versions(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return spark_versions()


@route("GET", *_clusters("list-node-types"))
def _node_types(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return node_types()


# -- Jobs API (/api/2.2/jobs; 2.1 answers the same, without queueing by default) -------------------
def _jobs(op: str) -> tuple[str, str]:
    return f"/api/2.1/jobs/{op}", f"/api/2.2/jobs/{op}"


def _api_version(query: dict[str, str]) -> str:
    return query.get("__api__", "2.2")


@route("POST", *_jobs("create"))
def _job_create(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": ws.jobs.create(body, _api_version(query))}


@route("GET", *_jobs("get"))
def _job_get(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.get(query.get("job_id"))


@route("GET", *_jobs("list"))
def _job_list(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    limit = int(query.get("limit") or 20)
    if not 1 <= limit <= 100:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and 100, got {limit}")
    return ws.jobs.list_jobs(query.get("name"), limit, query.get("page_token"))


_JOB_ACTIONS: dict[str, Callable[[Workspace, dict[str, Any]], None]] = {
    "reset": lambda ws, body: ws.jobs.reset(body.get("job_id"), body.get("new_settings") or {}),
    "update": lambda ws, body: ws.jobs.update(body.get("job_id"), body.get("new_settings") or {},
                                              body.get("fields_to_remove") or []),
    "delete": lambda ws, body: ws.jobs.delete(body.get("job_id")),
    "runs/cancel": lambda ws, body: ws.jobs.cancel(body.get("run_id")),
    "runs/cancel-all": lambda ws, body: ws.jobs.cancel_all(body.get("job_id")),
}
for _op, _action in _JOB_ACTIONS.items():
    route("POST", *_jobs(_op))(_acting(_action))


@route("POST", *_jobs("run-now"))
def _run_now(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.run_now(body)


@route("POST", *_jobs("runs/submit"))
def _submit(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.submit(body)


@route("GET", *_jobs("runs/get"))
def _run_get(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.get_run(query.get("run_id"))


@route("GET", *_jobs("runs/get-output"))
def _run_output(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.get_output(query.get("run_id"))


@route("GET", *_jobs("runs/list"))
def _run_list(ws: Workspace, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return ws.jobs.list_runs(query)
