"""Running one notebook: parameters, output folder, the engine, and the result."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import params as params_mod
from . import sandbox
from .errors import InputError
from .kernels import WarmKernel
from .notebooks import has_parameters_cell, read_notebook
from .project import processed_dir
from .results import read_result
from .runs import NotebookResult
from .task_spec import TaskSpec, new_run_id, task_spec


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
