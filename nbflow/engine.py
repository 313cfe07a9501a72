"""nbflow's papermill engine: the only module that imports papermill and nbclient.

``papermill in.ipynb out.ipynb --engine nbflow`` and :func:`nbflow.run_notebook` both end up
here. The engine starts a fresh kernel (this interpreter's, so nbflow's runtime is there),
installs the Databricks runtime in it, runs the cells through nbclient, and records what
happened in the executed notebook's ``nbflow`` metadata: status, the failing cell, the exit
value, captured variables, task values, parameters and ``dbutils.notebook.run`` children.
It stops the kernel whatever happens: success, failure, timeout, dead kernel, Ctrl-C.

papermill loads its engines' entry points when it is first imported, this module's included;
so this module imports papermill only inside functions, and :class:`NbflowEngine` follows
papermill's engine protocol (``execute_notebook``, ``nb_kernel_name``, ``nb_language``)
without subclassing ``papermill.engines.Engine``: importing ``nbflow.engine`` first, or
papermill first, both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import queue
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from . import kernel_protocol, sandbox
from .errors import KernelStartError
from .kernel_protocol import kernel_python
from .kernels import KERNEL_NAME, WarmKernel, kernel_manager
from .lifecycle import terminate_as_interrupt
from .notebooks import SAVED_WIDGETS, adapt_databricks_ipynb, environment_specs, parameters_cell_names
from .params import widget_string
from .project import dbfs_root, project_dir, python_envs_root, secrets_file
from .results import PAYLOAD_KEY, cell_timings, child_results, to_payload, user_cells
from .runs import CANCELED, FAILED, RUNNING, SUCCESS, TIMEDOUT, CellError, NotebookResult, TaskState
from .runtime.context import RunContext
from .runtime.secrets import secret_env
from .task_spec import TaskSpec

log = logging.getLogger("nbflow")
# nbclient logs timeouts and dead kernels as errors; the run's outcome already reports them,
# in one line, so its own log stays quiet unless a user attaches a handler.
_client_log = logging.getLogger("nbflow.nbclient")
_client_log.addHandler(logging.NullHandler())
_client_log.propagate = False

EXIT_ENAME = "NotebookExit"
# The executed notebook is written at most this often while it runs (NBFLOW_SAVE_INTERVAL
# seconds), and always at its start, on a failed cell, and at the end.
SAVE_INTERVAL_S = 1.0
SAVE_SHARE = 0.25  # a notebook so large that writing it takes longer waits 4x its write time
STATE_TIMEOUT_S = 30.0
STOPPED_STATE_TIMEOUT_S = 3.0
ENVIRONMENT_TIMEOUT_S = 3600.0  # installing an environment spec's dependencies, without a notebook timeout
RESTART_ENAME = "RestartPython"  # nbflow.runtime.library.RestartPython: dbutils.library.restartPython()


@dataclass
class Outcome:
    status: TaskState = SUCCESS
    error: CellError | None = None
    stopped_at: int | None = None  # notebook cell index where execution stopped
    state: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def save_interval() -> float:
    """The time budget between two saves of a running notebook (``NBFLOW_SAVE_INTERVAL``)."""
    text = os.environ.get("NBFLOW_SAVE_INTERVAL", "")
    try:
        value = float(text) if text else SAVE_INTERVAL_S
    except ValueError:
        value = SAVE_INTERVAL_S
    return value if value >= 0 and math.isfinite(value) else SAVE_INTERVAL_S


def _manager(nb: NotebookNode, output_path: str | None, interval: float, **kwargs: Any) -> Any:
    """papermill's execution manager, saving on a time budget instead of at every cell's start
    and end: papermill's way writes the whole notebook twice per cell, which made a notebook of
    n cells cost n squared (1,000 one-line cells took two minutes).

    Cell metadata (start and end times, status) is still set at every cell, in memory; it is on
    disk at most ``interval`` seconds later, and all of it at the end. A save replaces the file
    at once (a temporary file renamed over it), so a run killed mid-write leaves the last whole
    notebook, not half of one.
    """
    from papermill.engines import NotebookExecutionManager  # lazy: papermill imports this module (see above)

    class BudgetedExecutionManager(NotebookExecutionManager):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(nb, output_path=output_path, **kwargs)
            self.interval = interval
            self.written_at: float | None = None  # monotonic time of the last write; None: never
            self.write_cost = 0.0
            self.dirty = False

        def save(self, **kw: Any) -> None:
            """papermill calls this at every cell's start and end: write only when due."""
            self.dirty = True
            if self.due():
                self.write()

        def due(self) -> bool:
            if self.written_at is None:
                return True
            return time.monotonic() - self.written_at >= max(self.interval, self.write_cost / SAVE_SHARE)

        def autosave_cell(self) -> None:  # each output a cell prints; papermill waits 30 s
            self.save()

        def save_if_due(self) -> None:
            if self.dirty and self.due():
                self.write()

        def write(self) -> None:
            started = time.monotonic()
            if self.output_path and "://" not in str(self.output_path):
                _write_atomically(self.nb, Path(self.output_path))
            else:
                super().save()  # a remote path (s3://...): papermill's own I/O
            self.written_at = time.monotonic()
            self.write_cost = self.written_at - started
            self.dirty = False

        def cell_exception(self, cell: NotebookNode, cell_index: int | None = None, **kw: Any) -> None:
            super().cell_exception(cell, cell_index=cell_index, **kw)
            self.write()  # a failure (or a stop) is on disk before anything else can go wrong

        def notebook_complete(self, **kw: Any) -> None:
            self.interval, self.write_cost = 0.0, 0.0  # its final save is not skipped
            super().notebook_complete(**kw)

    return BudgetedExecutionManager()


def _write_atomically(nb: NotebookNode, path: Path) -> None:
    text = nbformat.writes(nb)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class NbflowNotebookClient(NotebookClient):
    """nbclient's client driven cell by cell through papermill's execution manager.

    nbclient's own life cycle: ``setup_kernel`` starts (or adopts) the kernel and stops it,
    its cell hooks record each cell's start and failure in papermill's execution manager, and
    ``execute_cell`` runs each cell. The loop over the cells is nbflow's, because Databricks'
    stop rules are not nbclient's: ``dbutils.notebook.exit`` ends the run successfully,
    ``restartPython()`` goes on in a new process, an error fails it, the notebook's deadline times
    it out; the runtime is installed before any cell and the end state read after the last one
    (:mod:`nbflow.kernel_protocol`). The synchronous ``setup_kernel`` is the one used:
    ``async_setup_kernel`` takes over SIGINT and SIGTERM, and Ctrl-C must cancel the run.
    """

    def __init__(
        self,
        nb_man: Any,
        context: RunContext,
        deadline: float | None,
        kernel_log: IO[str] | None,
        warm: WarmKernel | None = None,
        environment: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        # The notebook's serverless environment specs, installed before its first cell.
        self.environment = environment or []
        # A warm kernel is already running, and its owner stops it; otherwise one private folder
        # holds this run's kernel sockets and connection file: one thing to remove.
        self.warm = warm
        self._socket_dir = warm.socket_dir if warm else tempfile.mkdtemp(prefix="nbflow-kernel-")
        # The kernel's sandbox maps the run's project and DBFS root (a dbutils.notebook.run child's
        # are its caller's), not whatever folder this process happens to be in.
        project = Path(context.project_dir)
        layout = sandbox.layout(project, project / context.dbfs_root)
        # Decided before the kernel manager starts its threads: the probe is then a fork, not an interpreter.
        sandbox.decide(layout)
        km = warm.km if warm else kernel_manager(self._socket_dir, layout)
        self.stream_file: IO[str] | None = kwargs.pop("stream_file", None)
        # The kernel runs in the notebook's folder, as Databricks runs a notebook in its own (unless
        # the run names another folder: pytest --nbflow-cwd).
        cwd = context.working_dir or (str(Path(context.notebook_path).parent) if context.notebook_path else None)
        super().__init__(nb_man.nb, km=km, resources={"metadata": {"path": cwd}}, on_cell_start=self._cell_started,
                         on_cell_error=self._cell_failed, **kwargs)
        self.nb_man = nb_man
        self.context = context
        self.deadline = deadline
        self.kernel_log = kernel_log
        self.timeout_func = self._remaining
        self.outcome = Outcome(RUNNING)
        if warm is not None:
            self.kc = warm.kc

    def _remaining(self, cell: Any = None) -> int | None:
        """nbclient's per-cell timeout: what is left of the notebook's deadline (whole seconds)."""
        if self.deadline is None:
            return None
        return max(math.ceil(self.deadline - time.monotonic()), 1)

    def execute(self, **kwargs: Any) -> NotebookNode:
        """Run the notebook in nbclient's ``setup_kernel``: a kernel started for it (stopped at
        the end, at once unless the run succeeded) or the warm one (its owner stops it)."""
        self.reset_execution_trackers()
        with contextlib.ExitStack() as stack:
            if self.warm is None:  # last, once nbclient has stopped the kernel
                stack.callback(shutil.rmtree, self._socket_dir, ignore_errors=True)
            self._setup_kernel(stack)
            stack.callback(self._choose_shutdown)
            try:
                self._run(self._bootstrap)
                failed = self._run(self._prepare_environment) if self.environment else None
                self.outcome = failed or self._execute_cells()
                self.outcome.state = self._collect_state()
            except KernelStartError as exc:
                self.outcome = Outcome(FAILED, CellError(None, "KernelStartError", str(exc)))
                raise
            except KeyboardInterrupt:
                # Ctrl-C outside a cell (cells catch their own). A run whose cells all finished
                # keeps its outcome; only its variables are lost.
                if self.outcome.status == RUNNING:
                    self.outcome = Outcome(CANCELED, CellError(None, "KeyboardInterrupt", "the run was cancelled"))
                else:
                    self.outcome.warnings.append("interrupted while reading the notebook's variables")
        return self.nb

    def _setup_kernel(self, stack: contextlib.ExitStack) -> None:
        """Enter nbclient's ``setup_kernel``; a start that fails, or is interrupted, leaves no
        kernel running and is reported as the run's outcome."""
        try:
            stack.enter_context(self.setup_kernel(cleanup_kc=self.warm is None, stdout=self.kernel_log,
                                                  stderr=self.kernel_log))
        except BaseException as exc:
            self._stop_kernel_now()
            message = f"could not start a Python kernel ({kernel_python()}): {exc}"
            if isinstance(exc, KeyboardInterrupt):
                self.outcome = Outcome(CANCELED, CellError(None, "KeyboardInterrupt", "the run was cancelled"))
                raise
            self.outcome = Outcome(FAILED, CellError(None, "KernelStartError", message))
            raise KernelStartError(message) from exc

    def _choose_shutdown(self) -> None:
        """A run that did not succeed stops its kernel at once: a stopped or failed cell may
        still be running, and a polite shutdown would wait for it."""
        if self.outcome.status != SUCCESS:
            self.shutdown_kernel = "immediate"

    def _cell_started(self, cell: NotebookNode, cell_index: int) -> None:
        """nbclient's ``on_cell_start`` hook: papermill's start time and status."""
        self.nb_man.cell_start(cell, cell_index)

    def _cell_failed(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        """nbclient's ``on_cell_error`` hook: a failed cell is recorded (and saved at once), but
        not ``dbutils.notebook.exit`` or ``restartPython()``, which end the cell on purpose."""
        if execute_reply["content"].get("ename") not in (EXIT_ENAME, RESTART_ENAME):
            self.nb_man.cell_exception(cell, cell_index=cell_index)

    def _stop_kernel_now(self) -> None:
        """Best effort after a failed or interrupted start: kill what started, remove its files."""
        try:
            if self.km is not None and self.km.has_kernel:
                self._run(self.km.shutdown_kernel, True)
        except Exception as exc:  # the start already failed; report that, not this
            log.debug("stopping a half-started kernel: %s", exc)
        finally:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def process_message(self, *args: Any, **kwargs: Any) -> Any:
        output = super().process_message(*args, **kwargs)
        self.nb_man.autosave_cell()  # long cells are saved as they go, as papermill does
        if output is not None and self.stream_file is not None and output.get("output_type") == "stream":
            self.stream_file.write(output.get("text", ""))
            self.stream_file.flush()
        return output

    async def async_execute_cell(self, *args: Any, **kwargs: Any) -> NotebookNode:
        """nbclient's, with a saver beside it: a cell that printed and then waits sends no message
        that would save its output; the saver writes it once the budget allows. It runs on the
        same event loop, so only while nbclient waits, never while it changes the notebook."""
        saver = asyncio.ensure_future(self._save_meanwhile())
        try:
            cell: NotebookNode = await super().async_execute_cell(*args, **kwargs)
            return cell
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver

    execute_cell = run_sync(async_execute_cell)

    async def _save_meanwhile(self) -> None:
        while True:
            await asyncio.sleep(max(self.nb_man.interval, 0.05))
            self.nb_man.save_if_due()

    def _run(self, func: Any, *args: Any) -> Any:
        """Call an async method from this synchronous client, as nbclient's own wrappers do."""
        return run_sync(func)(*args)

    async def _bootstrap(self, context_json: str | None = None) -> None:
        await kernel_protocol.bootstrap(self.kc, context_json or self.context.to_json())

    async def _prepare_environment(self) -> Outcome | None:
        """Install the notebook's environment specs' dependencies in its run's environment; the
        failed outcome (no cell ran) if that fails."""
        remaining = self._remaining()
        timeout = float(remaining) if remaining is not None else ENVIRONMENT_TIMEOUT_S
        try:
            content = await kernel_protocol.prepare_environment(self.kc, self.environment, timeout)
        except queue.Empty:
            return Outcome(TIMEDOUT, CellError(None, "TimeoutError", "the notebook's timeout expired while its "
                                                                     "environment's dependencies were installed"))
        if content.get("status") == "ok":
            return None
        return Outcome(FAILED, CellError(None, str(content.get("ename")), str(content.get("evalue"))))

    async def _restart_python(self) -> None:
        """``dbutils.library.restartPython()``: the rest of the notebook runs in a new Python
        process, as on Databricks: the namespace starts empty, and the run's context, widgets and
        task values are taken over (``nbflow.runtime.kernel.restart_json``)."""
        assert self.km is not None and self.kc is not None
        context_json = await kernel_protocol.restart_context(self.kc)
        # The same kernel manager and connection: the client (nbclient's) talks to the new process.
        await ensure_async(self.km.restart_kernel())  # nbclient types its manager as the blocking one
        await self.kc.wait_for_ready(timeout=kernel_protocol.RESTART_TIMEOUT_S)  # type: ignore[attr-defined]
        await self._bootstrap(context_json)

    def _collect_state(self) -> dict[str, Any]:
        """Ask the kernel for exit value, variables and task values; empty if it cannot answer."""
        assert self.km is not None
        timeout = STATE_TIMEOUT_S
        try:
            if self.outcome.status in (TIMEDOUT, CANCELED):
                # The kernel is still busy with the cell that was stopped; a cell that ignores
                # the interrupt must not hold the run much past its deadline.
                self._run(self.km.interrupt_kernel)
                timeout = STOPPED_STATE_TIMEOUT_S
            if not self._run(self.km.is_alive):
                return {}
            return self._run(kernel_protocol.state, self.kc, timeout)  # type: ignore[no-any-return]
        except Exception as exc:
            reason = "no answer in time" if isinstance(exc, queue.Empty) else str(exc) or type(exc).__name__
            self.outcome.warnings.append(f"could not read the notebook's variables ({reason})")
            return {}

    def _execute_cells(self) -> Outcome:
        outcome = Outcome()
        cells = self.nb.cells
        user_index = {id(cell): index for index, cell in user_cells(self.nb)}
        for index, cell in enumerate(cells):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                outcome = self._stop(TIMEDOUT, index, "TimeoutError", "the notebook's timeout expired", user_index)
                break
            try:
                self.execute_cell(cell, index)  # its start and failure recorded by the hooks above
            except CellExecutionError as exc:
                if exc.ename == EXIT_ENAME:
                    _show_exit(cells[index])
                    outcome = Outcome(SUCCESS, stopped_at=index)
                elif exc.ename == RESTART_ENAME:
                    _show_exit(cells[index], RESTART_ENAME)
                    self._run(self._restart_python)  # then on with the next cell
                    continue
                else:
                    outcome = Outcome(
                        FAILED,
                        CellError(user_index.get(id(cells[index])), exc.ename, exc.evalue, _traceback(cells[index])),
                        index,
                    )
                break
            except CellTimeoutError:
                outcome = self._stop(TIMEDOUT, index, "TimeoutError", "the notebook's timeout expired", user_index)
                break
            except DeadKernelError:
                code = self._kernel_exit_code()
                outcome = self._stop(
                    FAILED, index, "DeadKernelError", f"the kernel died while running this cell{code}", user_index
                )
                break
            except KeyboardInterrupt:
                outcome = self._stop(CANCELED, index, "KeyboardInterrupt", "the run was cancelled", user_index)
                break
            finally:
                self.nb_man.cell_complete(cells[index], cell_index=index)
        if outcome.stopped_at is not None:
            if outcome.status == SUCCESS:
                meta = cells[outcome.stopped_at].metadata.papermill
                meta["exception"], meta["status"] = False, "completed"
            for cell in cells[outcome.stopped_at + 1:]:
                cell.metadata.papermill["status"] = "skipped"
        return outcome

    def _stop(self, status: TaskState, index: int, ename: str, evalue: str, user_index: dict[int, int]) -> Outcome:
        cell = self.nb.cells[index]
        self.nb_man.cell_exception(cell, cell_index=index)
        return Outcome(status, CellError(user_index.get(id(cell)), ename, evalue), index)

    def _kernel_exit_code(self) -> str:
        try:
            code = self._run(self.km.provisioner.poll) if self.km and self.km.provisioner else None
        except Exception:
            code = None
        return f" (exit code {code})" if code is not None else ""


def _show_exit(cell: NotebookNode, ename: str = EXIT_ENAME) -> None:
    """Replace the NotebookExit error output by the "Notebook exited: ..." line Databricks shows
    (and the RestartPython one by its "Restarting Python" line): neither is an error."""
    outputs = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error" and output.get("ename") == ename:
            text = "\n".join(output.get("traceback") or [])
            output = NotebookNode(output_type="stream", name="stdout", text=text + "\n")
        outputs.append(output)
    cell.outputs = outputs


def _traceback(cell: NotebookNode) -> tuple[str, ...]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return tuple(output.get("traceback") or [])
    return ()


class NbflowEngine:
    """The papermill engine registered as ``nbflow`` (entry point ``papermill.engine``)."""

    @classmethod
    def nb_kernel_name(cls, nb: NotebookNode, name: str | None = None) -> str:
        return name or KERNEL_NAME

    @classmethod
    def nb_language(cls, nb: NotebookNode, language: str | None = None) -> str:
        return language or "python"

    @classmethod
    def execute_notebook(
        cls,
        nb: NotebookNode,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> NotebookNode:
        """papermill's engine entry: wrap the notebook in its execution manager, then run it."""
        task = kwargs.get("nbflow_task")
        if task is None:
            # Plain papermill read the .ipynb itself: honour a Databricks export's metadata here.
            adapt_databricks_ipynb(nb, str(kwargs.get("input_path") or "<notebook>"))
        meta = nb.metadata.get("papermill", {})
        if task is not None and not isinstance(meta.get("input_path"), (str, type(None))):
            # papermill records its input as given; ours is a parsed notebook, not a path.
            meta["input_path"] = task.context.notebook_path
        nb_man = _manager(nb, output_path, save_interval(), progress_bar=progress_bar, log_output=log_output,
                          autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        executed: NotebookNode = nb_man.nb
        return executed

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: float | None = None,
        input_path: Any = None,
        nbflow_task: TaskSpec | None = None,
        nbflow_warm_kernel: WarmKernel | None = None,
        **kwargs: Any,
    ) -> NotebookNode:
        # nbflow's own runs pass their TaskSpec (completed by nbflow.runner.run_task); the warm
        # kernel, a live process with open sockets, cannot be part of a JSON spec, so it is a
        # keyword of its own. Plain `papermill --engine nbflow` passes neither.
        nb: NotebookNode = nb_man.nb
        passed = nb.metadata.get("papermill", {}).get("parameters") or {}
        if nbflow_task is None:
            # Plain papermill: the notebook's papermill parameters are its widget values too.
            project = project_dir()
            secrets = secrets_file(project)
            nbflow_context = RunContext(
                notebook_path=str(Path(input_path).resolve()) if isinstance(input_path, str) else "",
                output_path=str(Path(nb_man.output_path).resolve()) if nb_man.output_path else None,
                arguments={k: widget_string(v) for k, v in passed.items()},
                python=kernel_python(),
                project_dir=str(project),
                dbfs_root=str(dbfs_root(project)),
                secrets_file=None if secrets is None else str(secrets),
                secret_env=secret_env(),
            )
            nbflow_parameters = {k: {"value": v, "source": "papermill"} for k, v in passed.items()}
            timeout = execution_timeout
            kernel_log_path = None
        else:
            nbflow_context = nbflow_task.context
            nbflow_parameters = nbflow_task.recorded_parameters()
            timeout = nbflow_task.timeout if nbflow_task.timeout is not None else execution_timeout
            kernel_log_path = nbflow_task.kernel_log
        saved = nb.metadata.get(SAVED_WIDGETS)
        if isinstance(saved, dict) and saved and nbflow_context.saved_widgets is None:
            # Values the user set in the widget panel and saved with the notebook (nbflow lab).
            nbflow_context = replace(nbflow_context, saved_widgets={
                str(k): v for k, v in saved.items() if isinstance(v, str)})
        environment = environment_specs(nb, nbflow_context.notebook_path or "<notebook>")
        owned_env = None
        if not nbflow_context.python_env:
            # The run's notebook-scoped libraries go here (made on the first install); its
            # dbutils.notebook.run children share it, and it goes when the run ends.
            owned_env = python_envs_root(Path(nbflow_context.project_dir)) / uuid.uuid4().hex[:12]
            nbflow_context = replace(nbflow_context, python_env=str(owned_env))
        deadline = time.monotonic() + timeout if timeout else None
        started = dt.datetime.now(dt.timezone.utc)
        # Recorded now, and written at once, so that a run killed outright still says what it was.
        _record(nb, Outcome(RUNNING), nbflow_context, nbflow_parameters, started, None)
        getattr(nb_man, "write", nb_man.save)()
        log_file = open(kernel_log_path, "w", encoding="utf-8") if kernel_log_path else None  # noqa: SIM115
        client = NbflowNotebookClient(
            nb_man,
            context=nbflow_context,
            deadline=deadline,
            kernel_log=log_file,
            startup_timeout=start_timeout,
            log=_client_log,
            stream_file=stdout_file if stdout_file is not None else (sys.stderr if log_output else None),
            warm=nbflow_warm_kernel,
            environment=environment,
        )
        try:
            client.execute()
        finally:
            if owned_env is not None:
                shutil.rmtree(owned_env, ignore_errors=True)
            if log_file is not None:
                log_file.close()
                if nbflow_warm_kernel is not None:  # the warm kernel wrote to its own log
                    shutil.copyfile(nbflow_warm_kernel.log_path, log_file.name)
                _keep_kernel_log(Path(log_file.name), client.outcome)
            ended = dt.datetime.now(dt.timezone.utc)
            _record(nb, client.outcome, nbflow_context, nbflow_parameters, started, ended)
        return nb


def _keep_kernel_log(path: Path, outcome: Outcome) -> None:
    """Keep the kernel's own stdout/stderr only to explain a kernel that died or never started.

    It is the raw process output, which nbflow cannot redact, so it is not kept otherwise.
    """
    died = outcome.error is not None and outcome.error.ename in ("DeadKernelError", "KernelStartError")
    if not died or path.stat().st_size == 0:
        path.unlink(missing_ok=True)


def _record(
    nb: NotebookNode,
    outcome: Outcome,
    context: RunContext,
    parameters: dict[str, dict[str, Any]],
    started: dt.datetime,
    ended: dt.datetime | None,
) -> None:
    """Write the ``nbflow`` payload into the notebook's metadata."""
    state = outcome.state
    exit_info = state.get("exit") or {}
    params = {name: dict(entry) for name, entry in parameters.items()}
    for name in state.get("secret_arguments") or []:
        if name in params:
            params[name]["value"] = "[REDACTED]"
    for name, widget in (state.get("widgets") or {}).items():
        if name not in params:
            params[name] = {"value": widget["value"], "source": "widget default"}
    declared = parameters_cell_names(nb)
    # Only a notebook that ran every cell can tell that nothing reads a parameter: one that failed
    # or exited early may read it in a cell it never reached.
    ran_to_end = outcome.status == SUCCESS and outcome.stopped_at in (None, len(nb.cells) - 1)
    warnings = [
        f"parameter {name!r} was passed but the notebook has no widget or parameter of that name"
        for name in (state.get("unused_arguments") or [] if ran_to_end else [])
        if name not in declared
    ] + outcome.warnings
    children_dir = None
    if context.output_path:
        out = Path(context.output_path)
        children_dir = out.with_name(out.stem + ".children")
    result = NotebookResult(
        notebook=context.notebook_path,
        output=context.output_path,
        status=outcome.status,
        exit_value=exit_info.get("value"),
        exit_truncated=bool(exit_info.get("truncated", False)),
        variables=state.get("variables") or {},
        parameters=params,
        task_values=state.get("task_values") or {},
        error=outcome.error,
        cells=cell_timings(nb),
        children=child_results(children_dir) if children_dir else [],
        warnings=warnings,
        tables_written=list(state.get("tables_written") or []),
        run_id=context.run_id,
        task_key=context.task_key,
        start_time=started.isoformat(),
        end_time=None if ended is None else ended.isoformat(),
        duration_s=None if ended is None else (ended - started).total_seconds(),
    )
    nb.metadata[PAYLOAD_KEY] = to_payload(result)


def execute(
    nb: NotebookNode,
    task: TaskSpec,
    inject: dict[str, Any] | None,
    stream: IO[str] | None = None,
    warm: WarmKernel | None = None,
) -> None:
    """Run a notebook through papermill with this engine, as the completed ``task`` says
    (:func:`nbflow.runner.run_task`), writing it to the task's output path.

    ``stream`` receives the notebook's stdout and stderr as the cells print them. A ``warm``
    kernel runs the notebook instead of a new one; its owner stops it afterwards.

    A failing notebook is not an error here: its outcome is in the written notebook's metadata.
    """
    import papermill  # lazy: papermill imports this module (see above)
    from papermill.engines import papermill_engines  # lazy: as above
    from papermill.exceptions import PapermillExecutionError  # lazy: as above

    # The entry point registers the engine when nbflow is installed; this covers a source tree.
    papermill_engines.register("nbflow", NbflowEngine)

    # papermill saves the notebook (with its error banner) before it raises for a failed cell.
    with contextlib.suppress(PapermillExecutionError), terminate_as_interrupt():
        papermill.execute_notebook(
            nb,
            task.output_path,
            parameters=inject or None,
            engine_name="nbflow",
            kernel_name=KERNEL_NAME,
            language="python",
            progress_bar=False,
            stdout_file=stream,
            nbflow_task=task,
            nbflow_warm_kernel=warm,
        )
