"""Results live in the executed notebook: the ``nbflow`` metadata payload, written and read.

The engine writes ``nb.metadata["nbflow"]`` (a versioned payload) into every executed notebook;
:func:`read_result` reads it back into a :class:`NotebookResult`, so anyone can pull exit
values and variables out of ``processed/`` later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import NotebookFormatError, NotebookNotFound
from .runs import CellError, NotebookResult, task_state

PAYLOAD_KEY = "nbflow"
PAYLOAD_VERSION = 1
# Cells that nbflow or papermill add to an executed notebook; user cell indexes skip them.
# Cells papermill or nbflow adds to the executed notebook: "nbflow-widgets" declares the widgets
# saved in a Databricks .ipynb export (see nbflow.notebooks.adapt_databricks_ipynb).
ADDED_CELL_TAGS = ("injected-parameters", "papermill-error-cell-tag", "nbflow-widgets")
# display(df) of a DataFrame: its schema and first rows as JSON beside the HTML (for diffs, goldens).
TABLE_MIME = "application/vnd.nbflow.table+json"


def to_payload(result: NotebookResult) -> dict[str, Any]:
    """The ``nbflow`` metadata of an executed notebook: the result, versioned, without ``output``
    (the notebook the payload is written in; :func:`read_result` sets it from where it reads)."""
    data = result.to_json()
    data.pop("output")
    return {"version": PAYLOAD_VERSION, **data}


def user_cells(nb: Mapping[str, Any]) -> list[tuple[int, Any]]:
    """The notebook's own cells with their user index, skipping cells papermill or nbflow added."""
    out: list[tuple[int, Any]] = []
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in ADDED_CELL_TAGS):
            continue
        out.append((len(out), cell))
    return out


def cell_timings(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per user cell: index, type, status and duration, from papermill's cell metadata."""
    rows: list[dict[str, Any]] = []
    for index, cell in user_cells(nb):
        meta = cell.get("metadata", {}).get("papermill", {})
        status = meta.get("status") or "pending"
        if status == "pending":
            status = "not run"
        rows.append(
            {"index": index, "cell_type": cell.get("cell_type"), "status": status, "duration_s": meta.get("duration")}
        )
    return rows


def result_from_notebook(nb: Mapping[str, Any], output: str | None) -> NotebookResult:
    payload = nb.get("metadata", {}).get(PAYLOAD_KEY)
    if not isinstance(payload, dict):
        raise NotebookFormatError(f"{output}: not a notebook executed by nbflow (no 'nbflow' metadata)")
    version = payload.get("version")
    if version != PAYLOAD_VERSION:
        raise NotebookFormatError(f"{output}: nbflow metadata version {version} is not supported (expected 1)")
    fields = {k: v for k, v in payload.items() if k in NotebookResult.__dataclass_fields__}
    error = fields.pop("error", None)
    status = task_state(str(fields.pop("status", "")))
    result = NotebookResult(**{**fields, "output": output, "status": status})
    result.error = CellError.from_json(error) if error else None
    # Timings are read from the cells themselves so they survive an interrupted run.
    result.cells = cell_timings(nb)
    return result


def read_result(executed_path: str | Path) -> NotebookResult:
    """Read what an nbflow run recorded in an executed notebook."""
    path = Path(executed_path)
    if not path.is_file():
        raise NotebookNotFound(f"executed notebook not found: {path}")
    # A notebook nbflow executed is nbformat 4 JSON: read as such, without nbformat's import and
    # validation (a third of a warm `nbflow run`); anything else goes through nbformat.
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        nb = None
    if isinstance(nb, dict) and nb.get("nbformat") == 4 and isinstance(nb.get("cells"), list):
        return result_from_notebook(nb, str(path))
    import nbformat  # lazy: only for a notebook of another format or a damaged one

    try:
        node = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for bad documents
        raise NotebookFormatError(f"{path}: not a valid .ipynb file ({exc})") from exc
    return result_from_notebook(node, str(path))


def child_results(children_dir: Path) -> list[dict[str, Any]]:
    """Summaries of the ``dbutils.notebook.run`` children saved under a parent's output."""
    rows: list[dict[str, Any]] = []
    if not children_dir.is_dir():
        return rows
    for path in sorted(children_dir.glob("*.ipynb")):
        try:
            child = read_result(path)
        except (NotebookFormatError, NotebookNotFound, json.JSONDecodeError):
            rows.append({"output": str(path), "status": "UNKNOWN"})
            continue
        rows.append(
            {
                "notebook": child.notebook,
                "output": str(path),
                "status": child.status.value,
                "exit_value": child.exit_value,
                "duration_s": child.duration_s,
                "parameters": {k: v.get("value") for k, v in child.parameters.items()},
                "error": None if child.error is None else child.error.summary(),
                # The child's own and its children's (each level adds up the one below).
                "tables_written": sorted(set(child.tables_written).union(
                    *(grandchild.get("tables_written") or [] for grandchild in child.children))),
            }
        )
    return rows


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
