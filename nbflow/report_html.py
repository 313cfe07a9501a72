"""``report.html``: a self-contained page with the task table, errors and a timeline chart."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .report import task_summary
from .runs import PlanRun, TaskState

COLOURS = {"SUCCESS": "#2e7d32", "FAILED": "#c62828", "TIMEDOUT": "#ef6c00", "CANCELED": "#757575",
           "UPSTREAM_FAILED": "#bdbdbd", "UPSTREAM_CANCELED": "#bdbdbd", "EXCLUDED": "#90caf9"}
ROW, LABEL, WIDTH = 26, 190, 760


def gantt(runs: list[PlanRun]) -> str:
    """An inline SVG: one bar per task attempt, on one time axis for all the given runs."""
    rows: list[tuple[str, list[tuple[int, int, TaskState]]]] = []
    for run in runs:
        prefix = f"{run.mode}: " if len(runs) > 1 else ""
        for task_run in run.tasks.values():
            bars = [(a.start_ms - run.start_ms, a.end_ms - run.start_ms, a.status) for a in task_run.attempts]
            rows.append((prefix + task_run.task.task_key, bars))
    span = max((run.end_ms - run.start_ms for run in runs), default=1) or 1
    height = ROW * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 20}" height="{height}" '
             'font-family="sans-serif" font-size="12">']
    for i, (label, bars) in enumerate(rows):
        y = i * ROW + 4
        parts.append(f'<text x="4" y="{y + 15}">{html.escape(label)}</text>')
        for start, end, status in bars:
            x = LABEL + WIDTH * start / span
            w = max(WIDTH * (end - start) / span, 2)
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 8}" '
                         f'fill="{COLOURS.get(status, "#555")}"><title>{html.escape(label)}: {status}, '
                         f'{(end - start) / 1000:.2f} s</title></rect>')
    axis_y = ROW * len(rows) + 18
    for k in range(6):
        x = LABEL + WIDTH * k / 5
        parts.append(f'<text x="{x:.0f}" y="{axis_y}" text-anchor="middle">{span * k / 5000:.1f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(runs: list[PlanRun], title: str, comparison: list[dict[str, Any]] | None = None) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    if comparison:
        body.append("<h2>Sequential against parallel</h2><table><tr><th>mode</th><th>wall s</th>"
                    "<th>summed task s</th><th>speed-up</th><th>efficiency</th></tr>")
        for row in comparison:
            body.append("<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k in
                                         ("mode", "wall_s", "task_s", "speedup", "efficiency")) + "</tr>")
        body.append("</table>")
    body.append("<h2>Timeline</h2>" + gantt(runs))
    for run in runs:
        body.append(f"<h2>{html.escape(run.mode)} run {html.escape(run.run_id)}: {html.escape(run.result_state)}</h2>")
        body.append("<table><tr><th>task</th><th>status</th><th>attempts</th><th>seconds</th><th>exit value</th>"
                    "<th>error</th><th>notebook</th></tr>")
        for task_run in run.tasks.values():
            row = task_summary(task_run)
            error = row["error"] or {}
            where = "" if not error else f"cell {error.get('cell_index')}: {error.get('ename')}: {error.get('evalue')}"
            cells = [row["task_key"], row["status"], row["attempts"], row["duration_s"] or "",
                     (row["exit_value"] or "")[:120], where or (row["reason"] or ""), row["output"] or ""]
            styles = ["", f' style="color:{COLOURS.get(row["status"], "#000")}"'] + [""] * (len(cells) - 2)
            body.append("<tr>" + "".join(f"<td{st}>{html.escape(str(c))}</td>" for st, c in zip(styles, cells,
                                                                                              strict=True)) + "</tr>")
        body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def write_report(runs: list[PlanRun], folder: Path, title: str,
                 comparison: list[dict[str, Any]] | None = None) -> Path:
    path = folder / "report.html"
    path.write_text(render(runs, title, comparison), encoding="utf-8")
    return path
