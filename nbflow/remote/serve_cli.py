"""``nbflow serve``: run the local workspace server in the foreground until Ctrl-C."""

from __future__ import annotations

import secrets
import signal
from types import FrameType

import click

from ..cli import handle_errors

DEFAULT_PORT = 8790


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the workspace to the network.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--token", envvar="NBFLOW_SERVE_TOKEN", metavar="T",
              help="The bearer token clients must send [env NBFLOW_SERVE_TOKEN; default: a new one, printed once].")
@handle_errors
def serve(host: str, port: int, token: str | None) -> None:
    """Serve a local Databricks workspace: the Workspace, Clusters and Jobs REST APIs, for databricks-sdk."""
    from ..errors import InputError
    from ..project import project_dir
    from .server import WorkspaceServer

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
    # `kill` (SIGTERM) stops it as Ctrl-C does: runs cancelled, their workers and kernels stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("nbflow serve: stopped", err=True)
    finally:
        server.server_close()
        server.workspace.close()
