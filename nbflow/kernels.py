"""Kernels: the one kernel spec nbflow runs, and kernels started ahead of their task.

A :class:`WarmKernel` is a fresh kernel started before anyone needs it: the process is up, the
client connected, nbflow's runtime imported and, when the plan uses Spark, a Spark Connect session
attached. The task that takes it pays only for its own cells; the kernel is never reused, so every
task still starts from a clean namespace, as on Databricks.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import psutil
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from . import kernel_protocol, kernel_zygote, lifecycle, sandbox
from .errors import KernelStartError
from .kernel_protocol import kernel_python
from .project import project_dir
from .runtime.secrets import without_secrets

KERNEL_NAME = "nbflow-python"
# In-memory history, as nbclient gives its kernels: parallel kernels must not share a sqlite file.
KERNEL_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]

__all__ = ["KERNEL_NAME", "KernelSpecs", "TreeKernelManager", "WarmKernel", "kernel_manager", "kernel_python"]


class KernelSpecs(KernelSpecManager):
    """One kernel spec, this interpreter's ipykernel, whatever the notebook's metadata names.

    A notebook exported from Databricks names no usable kernel, and a user-level ``python3``
    spec may point at an interpreter without nbflow; the cluster decides the runtime, as on
    Databricks. ``nbflow.lifecycle`` arms the kernel's lifeline before it runs ipykernel.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[kernel_python(), "-m", "nbflow.lifecycle", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (nbflow)",
            language="python",
            env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        )


def transport(folder: str) -> dict[str, str]:
    """Unix sockets where there are any: no TCP port to take, nothing reachable from the network."""
    if sys.platform.startswith(("linux", "darwin")):
        return {"transport": "ipc", "ip": os.path.join(folder, "kernel")}
    return {}


class TreeKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel takes its whole process tree with it (see
    :mod:`nbflow.lifecycle`): the kernel gets a tree tag and a lifeline, and stopping it, politely
    or not, or finding it dead, ends every process the notebook started."""

    def __init__(self, sandbox_layout: sandbox.Layout | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The project's sandbox the kernel enters first thing (see nbflow.sandbox): its
        # /Volumes, /dbfs and /Workspace. The launching process's project unless told.
        self.sandbox_layout = sandbox_layout
        self.tree_tag = lifecycle.new_tag("kernel")
        self._lifeline: int | None = None  # the write end; closing it ends the kernel and its tree

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        read, write = lifecycle.lifeline()
        self._close_lifeline()
        self._lifeline = write
        # Whatever path started it (warm pool, a cold kernel from nbclient, papermill), the kernel's
        # environment carries no secrets: the run hands them to the runtime in memory.
        env = without_secrets(lifecycle.tagged_env(self.tree_tag, kw.get("env")))
        env[lifecycle.LIFELINE_ENV] = str(read)
        env = sandbox.kernel_env(env, self.sandbox_layout or sandbox.layout(project_dir()))
        kw.update(env=env, pass_fds=(*kw.get("pass_fds", ()), read))
        try:
            if not self._fork(kernel_cmd, kw, read):
                await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            os.close(read)

    def _fork(self, kernel_cmd: list[str], kw: dict[str, Any], lifeline: int) -> bool:
        """Have the pool's kernel zygote fork the kernel (see :mod:`nbflow.kernel_zygote`); False
        if there is none, or it cannot (the kernel is then started the usual way)."""
        zygote = os.environ.get(kernel_zygote.ZYGOTE_ENV)
        if not zygote or self.provisioner is None:
            return False
        fds = {name: kw[name].fileno() for name in ("stdout", "stderr") if kw.get(name) is not None}
        try:
            forked = kernel_zygote.spawn(zygote, "kernel", kernel_cmd, kw["env"], kw.get("cwd"),
                                         {**fds, "lifeline": lifeline})
        except OSError as exc:
            self.log.debug("the kernel zygote could not fork a kernel: %s", exc)
            return False
        provisioner: Any = self.provisioner
        provisioner.process, provisioner.pid, provisioner.pgid = forked, forked.pid, forked.pid
        provisioner.cwd = kw.get("cwd")
        self._reconcile_connection_info(provisioner.connection_info)
        return True

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
        # Taken before the kernel stops: its children are orphaned once it has.
        doomed = self._tree()
        try:
            await super().shutdown_kernel(now=now, restart=restart)
        finally:
            self._end_tree(doomed)

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        try:
            await super().cleanup_resources(restart=restart)
        finally:
            self._end_tree([])  # a kernel that died on its own leaves its tree to end here

    def _tree(self) -> list[psutil.Process]:
        pid = getattr(self.provisioner, "pid", None)
        try:
            root = psutil.Process(pid) if pid else None
            return [root, *root.children(recursive=True)] if root else []
        except psutil.Error:
            return []

    def _end_tree(self, roots: list[psutil.Process]) -> None:
        if self._lifeline is None:
            return  # not started, or already ended (a shutdown's clean-up comes after the shutdown)
        try:
            lifecycle.kill_tree(self.tree_tag, roots)
        finally:
            self._close_lifeline()

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


def kernel_manager(socket_dir: str, sandbox_layout: sandbox.Layout | None = None) -> AsyncKernelManager:
    """A manager whose sockets and connection file live in ``socket_dir`` (one thing to remove),
    for a kernel in the sandbox ``sandbox_layout`` (default: the current project's)."""
    return TreeKernelManager(
        sandbox_layout=sandbox_layout,
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecs(),
        connection_file=os.path.join(socket_dir, "kernel.json"),
        **transport(socket_dir),
    )


class WarmKernel:
    """A kernel started ahead of need, handed to exactly one notebook run, then stopped.

    Its stdout and stderr go to ``log_path`` (kept by the engine only if the kernel dies).
    """

    def __init__(self, project: str | None = None) -> None:
        self.socket_dir = tempfile.mkdtemp(prefix="nbflow-kernel-")
        self.km = kernel_manager(self.socket_dir, None if project is None else sandbox.layout(Path(project)))
        self.kc: Any = None
        self.log_path = Path(self.socket_dir) / "kernel.log"
        self._log: IO[str] | None = None
        # The cluster server its Spark session attached to while warming (nbflow.cluster.attach.attached()).
        self.cluster: dict[str, Any] | None = None

    def launch(self, cwd: str) -> None:
        """Start the kernel process; it imports while the caller does other work."""
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by stop()
        # The kernel's environment carries no secrets: the run hands them to the runtime in memory.
        run_sync(self.km.start_kernel)(extra_arguments=KERNEL_ARGUMENTS, cwd=cwd, stdout=self._log,
                                       stderr=self._log, env=without_secrets())

    def ready(self, project: str, engine: str, spark: bool, timeout: float = 60.0) -> None:
        """Wait for the kernel, then import the runtime (and attach Spark) in it."""
        run_sync(self._ready)(project, engine, spark, timeout)

    async def _ready(self, project: str, engine: str, spark: bool, timeout: float) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            raise KernelStartError(f"could not start a Python kernel ({kernel_python()}): {exc}") from None
        self.kc.allow_stdin = False
        # With Spark attached ahead, the kernel says which server it attached to (see WarmKernel.cluster).
        self.cluster = await kernel_protocol.preload(self.kc, project, engine, spark, timeout)

    def stop(self, now: bool = False) -> None:
        """Stop the kernel (politely unless ``now``) and remove its files. Safe to call twice.

        An interrupt meanwhile waits for the end: cut short, the stop would be left half done in
        the event loop, to collide with the next one and leave the kernel and its folder behind."""
        with lifecycle.deferred_interrupts():
            try:
                run_sync(self._stop)(now)
            finally:
                if self._log is not None:
                    self._log.close()
                    self._log = None
                shutil.rmtree(self.socket_dir, ignore_errors=True)

    async def _stop(self, now: bool) -> None:
        try:
            if self.km.has_kernel and await self.km.is_alive():
                await self.km.shutdown_kernel(now=now)
        finally:
            await self.km.cleanup_resources()
            if self.kc is not None:
                self.kc.stop_channels()
                self.kc = None
