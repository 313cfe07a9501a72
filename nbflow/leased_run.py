"""One notebook run as ``nbflow run`` runs it: on a warm kernel of the project's cluster (its
pool service) when the cluster runs or the notebook uses Spark, else on a kernel of its own.

The service is asked first, before anything heavy is imported: with the cluster up, the caller is
a client that waits, and costs what the notebook's cells cost. ``nbflow run NOTEBOOK`` and the
pytest plugin (:mod:`nbflow.testing.plugin`) both run notebooks this way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import pool_wire, sandbox
from .errors import EnvironmentFailure
from .lifecycle import terminate_as_interrupt
from .project import project_dir
from .results import read_result
from .runs import NotebookResult
from .runtime.secrets import without_secrets
from .tail import Tail
from .task_spec import TaskSpec, new_run_id, task_spec


def run_leased(path: Path, parameters: Mapping[str, Any], folder: Path, *, timeout: float | None = None,
               log_output: bool = False, engine: str = "auto", run_id: str | None = None,
               working_dir: Path | None = None) -> NotebookResult:
    """Run ``path`` with ``parameters``, its executed notebook saved in ``folder``; its result.
    The kernel runs in ``working_dir``, else in the notebook's folder."""
    stream = folder / f"{path.stem}.log" if log_output else None
    spec = task_spec(path, parameters, output_dir=folder, timeout=timeout, run_id=run_id or new_run_id(),
                     engine_name=engine, output_log=stream)
    if working_dir is not None:
        spec = dataclasses.replace(spec, context=dataclasses.replace(spec.context, working_dir=str(working_dir)))
    result = _on_warm_kernel(path, spec, stream)
    if result is None:
        from .runner import run_task  # lazy: papermill's side, for a run without the pool service

        # Here the output goes to stderr as it is printed (log_output); no file to follow.
        result = run_task(dataclasses.replace(spec, output_log=None), log_output=log_output)
    return result


def _on_warm_kernel(path: Path, spec: TaskSpec, stream: Path | None) -> NotebookResult | None:
    """The run on a warm kernel of the pool service; None when that cannot be (it then runs here)."""
    project = project_dir()
    if not path.is_file():
        return None  # a missing notebook is reported by the run itself
    # Decided here, as a run here would (its one warning line on the caller's stderr); the
    # service runs only what its own kernels' decision matches.
    sandbox.decide(sandbox.layout(project))
    spec = dataclasses.replace(spec, context=dataclasses.replace(spec.context, environ=without_secrets()))
    tail = Tail(stream) if stream is not None else None
    try:
        with terminate_as_interrupt():
            done = pool_wire.run(project, spec.to_json())
            if done is None:
                # No service answered: start it if the cluster runs, or if the notebook needs one.
                from .notebook_facts import wants_cluster  # lazy: only when no service answered
                from .pool_client import service_available  # lazy: as above (the cluster's modules)

                if service_available(project, spec.context.engine, wants_cluster(path)):
                    done = pool_wire.run(project, spec.to_json())
    except KeyboardInterrupt:
        done = {"output": spec.output_path}  # cancelled and saved: its result is in the notebook
    except pool_wire.Lost as exc:
        raise EnvironmentFailure(f"{path}: {exc} (executed notebook so far: {spec.output_path})") from None
    finally:
        if tail is not None:
            tail.close()
    output = Path(str((done or {}).get("output") or spec.output_path))
    if done is None or not output.is_file():
        # Not run there, or refused before any cell (bad input: the notebook, the output folder):
        # run here, where the same checks raise their own one-line errors.
        if stream is not None:
            stream.unlink(missing_ok=True)
        return None
    return read_result(output)
