"""``nbflow kernel``: a Jupyter kernel with the Databricks runtime loaded at start.

The kernel is IPython's own (ipykernel) started with ``--ext=nbflow``: the same as a plain Python
kernel in which ``%load_ext nbflow`` ran first (:mod:`nbflow.runtime.interactive`). It runs on the
interpreter nbflow is installed in, so the runtime, pyspark and the project's tools are there.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from ..errors import InputError
from ..jupyter import kernelspec
from .commands import short_help

DEFAULT_NAME = kernelspec.NAME


@click.group("kernel", short_help=short_help("kernel"))
def kernel() -> None:
    """A Jupyter kernel with the Databricks runtime: spark, dbutils, display, %sql, %run..."""


def _where(user: bool, sys_prefix: bool, prefix: str | None) -> dict[str, object]:
    if sum((user, sys_prefix, prefix is not None)) > 1:
        raise InputError("--user, --sys-prefix and --prefix: give one of them at most")
    if sys_prefix:
        return {"prefix": sys.prefix}
    if prefix is not None:
        return {"prefix": str(Path(prefix).resolve())}
    return {"user": True}  # every Jupyter this user starts sees it, with no administrator rights


@kernel.command("install")
@click.option("--user", is_flag=True, help="Install for this user (~/.local/share/jupyter): the default.")
@click.option("--sys-prefix", is_flag=True, help="Install into this Python environment (sys.prefix).")
@click.option("--prefix", metavar="DIR", help="Install under DIR (DIR/share/jupyter/kernels).")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="The kernel's name.")
def install(user: bool, sys_prefix: bool, prefix: str | None, name: str) -> None:
    """Register the nbflow kernel with Jupyter (JupyterLab, Notebook and VS Code list it)."""
    from jupyter_client.kernelspec import KernelSpecManager  # lazy: only this command needs it

    where = _where(user, sys_prefix, prefix)
    with tempfile.TemporaryDirectory() as folder:
        kernelspec.write_kernel_spec(Path(folder))
        try:
            target = KernelSpecManager().install_kernel_spec(folder, name, replace=True, **where)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot install the kernel {name!r}: {exc}") from None
    click.echo(f"installed the kernel {name!r} in {target}")


@kernel.command("uninstall")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="The kernel's name.")
@click.option("--prefix", metavar="DIR", help="Also look under DIR (as given to install --prefix).")
def uninstall(name: str, prefix: str | None) -> None:
    """Remove the nbflow kernel from Jupyter (wherever Jupyter finds it)."""
    from jupyter_client.kernelspec import KernelSpecManager  # lazy: as install

    manager = KernelSpecManager()
    if prefix is not None:
        manager.kernel_dirs = [str(Path(prefix).resolve() / "share" / "jupyter" / "kernels"), *manager.kernel_dirs]
    try:
        removed = manager.remove_kernel_spec(name)
    except KeyError:
        raise InputError(f"no kernel named {name!r} is installed (see `jupyter kernelspec list`)") from None
    except OSError as exc:
        raise InputError(f"cannot remove the kernel {name!r}: {exc}") from None
    click.echo(f"removed the kernel {name!r} from {removed}")
