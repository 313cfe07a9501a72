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
from typing import TYPE_CHECKING, Any

from . import params as params_mod
from .errors import InputError
from .notebooks import has_parameters_cell, read_notebook
from .params import Param
from .project import dbfs_root, processed_dir, project_dir, secrets_file
from .results import NotebookResult, read_result
from .runtime.context import RunContext
from .runtime.secrets import secret_env

if TYPE_CHECKING:
    from .kernels import WarmKernel

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
    from . import sandbox
    from .kernels import kernel_python

    cluster_engine = engine_name
    source = Path(path)
    nb = read_notebook(source)
    run_id = run_id or new_run_id()
    project = project_dir()
    if output_path is None:
        folder = Path(output_dir) if output_dir is not None else processed_dir(project) / run_id
        output_path = folder / (source.stem + ".ipynb")
    output = _prepare_output(Path(output_path).resolve(), source.resolve())
    passed: dict[str, Param] = params_mod.from_mapping(parameters, "api")
    inject = None
    if has_parameters_cell(nb):
        inject = {name: p.value for name, p in passed.items() if params_mod.injectable(name)}
    ctx = RunContext(
        notebook_path=str(source.resolve()),
        output_path=str(output),
        run_id=run_id,
        task_key=task_key or source.stem,
        arguments={name: p.widget_value for name, p in passed.items()},
        project_dir=str(project),
        dbfs_root=str(dbfs_root(project)),
        secrets_file=None if (found := secrets_file(project)) is None else str(found),
        python=kernel_python(),
        engine=cluster_engine,
        secret_env=secret_env(),
    )
    if context:
        # A dbutils.notebook.run child inherits its caller's project, DBFS, secrets and job.
        ctx = dataclasses.replace(ctx, **{k: v for k, v in context.items() if k in RunContext.INHERITED})
    # Decided before papermill is imported (its numpy starts threads): the probe is then a fork.
    project_of_run = Path(ctx.project_dir)
    sandbox.decide(sandbox.layout(project_of_run, project_of_run / ctx.dbfs_root))
    from . import engine  # heavy (papermill); imported only when something runs

    recorded = {name: {"value": p.value, "source": p.source} for name, p in passed.items()}
    kernel_log = output.with_suffix(".kernel.log")
    if output_log is not None:
        with open(output_log, "w", encoding="utf-8") as stream:
            engine.execute(nb, output, ctx, inject, recorded, timeout, kernel_log, stream, kernel)
    else:
        engine.execute(nb, output, ctx, inject, recorded, timeout, kernel_log, sys.stderr if log_output else None,
                       kernel)
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
        "status": result.status,
        "output_dir": str(output_dir),
        "start_time": result.start_time,
        "end_time": result.end_time,
        "tasks": [result.task_summary()],
    }
