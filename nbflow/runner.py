"""Running one notebook: parameters, output folder, the engine, and the result."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import params as params_mod
from . import sandbox
from .errors import InputError
from .kernels import WarmKernel, kernel_python
from .notebooks import has_parameters_cell, read_notebook
from .project import dbfs_root, processed_dir, project_dir, secrets_file
from .results import read_result
from .runs import NotebookResult
from .runtime.context import RunContext
from .runtime.secrets import secret_env
from .task_spec import TaskSpec


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_notebook(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path | None = None,
    output_path: str | Path | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    task_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    log_output: bool = False,
    engine_name: str = "auto",
    output_log: str | Path | None = None,
    kernel: WarmKernel | None = None,
) -> NotebookResult:
    """Run one notebook in a fresh kernel with the Databricks runtime, and return its result.

    ``parameters`` maps names to values (a value may be a :class:`nbflow.params.Param` that
    carries its source). The executed notebook goes to ``output_path``, else to
    ``<output_dir>/<notebook stem>.ipynb``, else to ``processed/<run_id>/``. A notebook that
    fails or times out is a result with that status, not an exception; bad input raises an
    :class:`nbflow.errors.InputError`, and a kernel that cannot start a ``KernelStartError``.
    ``engine_name`` is the cluster engine used if the notebook needs Spark and no cluster runs
    (``auto``, ``sail``, ``spark`` or ``sc://host:port``). The notebook's printed output goes to
    stderr as it runs with ``log_output``, and to the file ``output_log`` if given. A warm
    ``kernel`` (see :mod:`nbflow.kernels`) runs the notebook instead of a new one; the caller
    stops it.
    """
    spec = task_spec(path, parameters, output_dir=output_dir, output_path=output_path, timeout=timeout,
                     run_id=run_id, task_key=task_key, context=context, engine_name=engine_name,
                     output_log=output_log)
    return run_task(spec, log_output=log_output, kernel=kernel)


def run_context(engine_name: str = "auto", inherited: Mapping[str, Any] | None = None) -> RunContext:
    """The context of a run started from this process: its project's folders and secrets, the
    kernels' interpreter, the cluster engine; ``inherited`` fields (those a caller passes on, see
    ``RunContext.INHERITED``: a plan run's id and upstream task values...) win."""
    project = project_dir()
    ctx = RunContext(
        project_dir=str(project),
        dbfs_root=str(dbfs_root(project)),
        secrets_file=None if (found := secrets_file(project)) is None else str(found),
        python=kernel_python(),
        engine=engine_name,
        secret_env=secret_env(),
    )
    if inherited:
        ctx = dataclasses.replace(ctx, **{k: v for k, v in inherited.items() if k in RunContext.INHERITED})
    return ctx


def task_spec(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path | None = None,
    output_path: str | Path | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    task_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    engine_name: str = "auto",
    output_log: str | Path | None = None,
) -> TaskSpec:
    """The spec of a notebook run as :func:`run_notebook`'s arguments describe it (see there);
    ``context`` holds fields of a caller's :class:`RunContext` that the run inherits."""
    source = Path(path)
    run_id = run_id or new_run_id()
    if output_path is None:
        folder = Path(output_dir) if output_dir is not None else processed_dir(project_dir()) / run_id
        output_path = folder / (source.stem + ".ipynb")
    return TaskSpec(
        notebook=str(source),
        context=run_context(engine_name, {"run_id": run_id, **(context or {})}),
        task_key=task_key,
        parameters=params_mod.from_mapping(parameters, "api"),
        timeout=timeout,
        output_path=str(output_path),
        output_log=None if output_log is None else str(output_log),
    )


def run_task(spec: TaskSpec, *, log_output: bool = False, kernel: WarmKernel | None = None) -> NotebookResult:
    """Run the notebook ``spec`` describes and return its result (see :func:`run_notebook`).

    Here the spec is completed, once, where the notebook runs: the output path's default, the
    context's notebook fields (resolved paths, task key, widget values), the kernel log's place.
    """
    source = Path(spec.notebook)
    nb = read_notebook(source)
    ctx = spec.context
    output_path = spec.output_path
    if output_path is None:
        output_path = str(processed_dir(Path(ctx.project_dir)) / (ctx.run_id or new_run_id()) /
                          (source.stem + ".ipynb"))
    output = _prepare_output(Path(output_path).resolve(), source.resolve())
    inject = None
    if has_parameters_cell(nb):
        inject = {name: p.value for name, p in spec.parameters.items() if params_mod.injectable(name)}
    ctx = dataclasses.replace(
        ctx,
        notebook_path=str(source.resolve()),
        output_path=str(output),
        task_key=spec.task_key or source.stem,
        arguments={name: p.widget_value for name, p in spec.parameters.items()},
    )
    spec = dataclasses.replace(spec, context=ctx, output_path=str(output),
                               kernel_log=spec.kernel_log or str(output.with_suffix(".kernel.log")))
    # Decided before papermill is imported (its numpy starts threads): the probe is then a fork.
    project_of_run = Path(ctx.project_dir)
    sandbox.decide(sandbox.layout(project_of_run, project_of_run / ctx.dbfs_root))
    from . import engine  # lazy: papermill (numpy starts threads) must come after sandbox.decide

    if spec.output_log is not None:
        with open(spec.output_log, "w", encoding="utf-8") as stream:
            engine.execute(nb, spec, inject, stream, kernel)
    else:
        engine.execute(nb, spec, inject, sys.stderr if log_output else None, kernel)
    return read_result(output)


def _prepare_output(output: Path, source: Path) -> Path:
    """Check and make the executed notebook's place; clear what an earlier run left there."""
    if output == source:
        raise InputError(f"{output}: the executed notebook would overwrite its source; choose another --output-dir")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {output.parent}: {exc.strerror or exc}") from None
    # Children of an earlier run into the same place would be listed as this run's.
    shutil.rmtree(output.with_name(output.stem + ".children"), ignore_errors=True)
    return output


def write_run_json(result: NotebookResult, output_dir: Path) -> Path:
    """``run.json`` beside the executed notebook: the ``--json`` summary of the run."""
    path = output_dir / "run.json"
    path.write_text(json.dumps(summary(result, output_dir), indent=2), encoding="utf-8")
    return path


def summary(result: NotebookResult, output_dir: Path) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": result.status.value,
        "output_dir": str(output_dir),
        "start_time": result.start_time,
        "end_time": result.end_time,
        "tasks": [result.task_summary()],
    }
