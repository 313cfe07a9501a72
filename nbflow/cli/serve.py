"""``nbflow serve``: run the local workspace server in the foreground until Ctrl-C."""

from __future__ import annotations

import logging
import secrets
import signal
from types import FrameType

import click

from ..errors import InputError
from ..project import project_dir
from ..serve.server import WorkspaceServer
from .commands import short_help

DEFAULT_PORT = 8790


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: a second signal while the runs are being cancelled must not cut that short (and
    # leave workers behind); the cleanup is bounded (JobsStore.stop).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _log_to_stderr() -> None:
    """The server's log lines (a client that went away, a defect) on stderr, one line each."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("nbflow serve: %(message)s"))
    log = logging.getLogger("nbflow.serve")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


@click.command(short_help=short_help("serve"))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the workspace to the network.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--token", envvar="NBFLOW_SERVE_TOKEN", metavar="T",
              help="The bearer token clients must send [env NBFLOW_SERVE_TOKEN; default: a new one, printed once].")
def serve(host: str, port: int, token: str | None) -> None:
    """Serve a local Databricks workspace: the Workspace, Clusters and Jobs REST APIs, for databricks-sdk."""
    generated = not token
    token = token or secrets.token_urlsafe(24)
    try:
        server = WorkspaceServer(project_dir(), token, host, port)
    except OSError as exc:
        raise InputError(f"nbflow serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"nbflow serve: warning: listening on {host}, reachable beyond this machine", err=True)
    click.echo(f"nbflow serve: workspace at {server.url} (state in {server.workspace.root}); Ctrl-C stops it",
               err=True)
    if generated:
        click.echo(f"export DATABRICKS_HOST={server.url} DATABRICKS_TOKEN={token}")
    _log_to_stderr()
    # `kill` (SIGTERM) stops it as Ctrl-C does: runs cancelled, their workers and kernels stopped.
    # Started with `&` from a script, SIGINT is ignored: SIGTERM is then the way, and stays fast.
    try:  # the handlers are set inside: a signal that comes at once still stops the runs
        signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, _interrupt)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.workspace.close()  # runs cancelled and recorded, workers and kernels stopped
    click.echo("nbflow serve: stopped", err=True)
