"""``nbflow lab``: JupyterLab for a project, with the nbflow kernel as its default kernel and
Databricks source notebooks opened as notebooks (:mod:`nbflow.jupyter.contents`).

The kernel's spec is written into the project (``.nbflow/jupyter/kernels/nbflow``) and put on
``JUPYTER_PATH`` for this server only: nothing is installed for the user. JupyterLab runs as a
child that handles Ctrl-C its own way (it asks first, on a terminal); it ends if this process is
killed. A cluster that the lab's notebooks started is stopped when the lab stops, unless it is
running other work then.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cluster import server as cluster_server
from ..errors import EnvironmentFailure
from ..pool_client import stop_cluster_if_idle
from ..project import jupyter_dir
from .kernelspec import NAME, write_kernel_spec

CONTENTS_MANAGER = "nbflow.jupyter.contents.SourceNotebooksManager"
# nbflow's JupyterLab extension (labextension/, built by make): source notebooks open as notebooks.
LAB_EXTENSIONS = Path(__file__).parent / "labextensions"
LAB_EXTENSION_NAME = "nbflow-lab"
_PR_SET_PDEATHSIG = 1


def lab_command(project: Path, port: int | None, browser: bool,
                extra: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The command that starts JupyterLab for ``project``, and its environment."""
    data = jupyter_dir(project)
    write_kernel_spec(data / "kernels" / NAME)
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(data), env.get("JUPYTER_PATH", "")) if p)
    env["NBFLOW_PROJECT_DIR"] = str(project)  # every notebook of the lab is in this project
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={project}",
               f"--ServerApp.contents_manager_class={CONTENTS_MANAGER}",
               f"--MappingKernelManager.default_kernel_name={NAME}"]
    if (LAB_EXTENSIONS / LAB_EXTENSION_NAME / "package.json").is_file():
        command.append(f"--LabApp.extra_labextensions_path={LAB_EXTENSIONS}")
    if port is not None:
        command.append(f"--ServerApp.port={port}")
    if not browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")  # containers run as root; the server still listens on localhost
    return [*command, *extra], env


def run_lab(project: Path, port: int | None, browser: bool, extra: Sequence[str] = ()) -> int:
    """Run JupyterLab until it stops; its exit status."""
    try:
        import jupyterlab  # noqa: F401  # lazy: the jupyter extra, only for this command
    except ImportError:
        raise EnvironmentFailure("nbflow lab needs JupyterLab: pip install 'nbflow[jupyter]'") from None
    project = project.resolve()
    command, env = lab_command(project, port, browser, extra)
    if not any(arg.startswith("--LabApp.extra_labextensions_path=") for arg in command):
        print(f"nbflow: nbflow's JupyterLab extension is not built ({LAB_EXTENSIONS / LAB_EXTENSION_NAME}: "
              "run make with node and npm): source notebooks open as text", file=sys.stderr)
    before = cluster_server.running(project)
    proc = subprocess.Popen(command, env=env, cwd=project, preexec_fn=_die_with_parent)
    # Ctrl-C is JupyterLab's (it reaches it from the terminal); SIGTERM is passed on.
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        if before is None:
            stop_cluster_if_idle(project)
    return code


def _die_with_parent() -> None:
    # A killed `nbflow lab` must not leave JupyterLab (and its kernels) running.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
