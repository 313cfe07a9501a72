"""nbflow's pytest plugin: notebooks and plans as tests (``pytest --nbflow``).

Opt in with ``--nbflow`` or ``nbflow = true`` in the ini file (``[tool.pytest.ini_options]``).
It then collects:

- ``.ipynb`` notebooks and Databricks source notebooks (``.py``/``.sql`` files recognised by their
  header, not their extension), matching ``nbflow_notebook_globs``: one item each
  (``etl.py::etl.py``), or one per named parameter set (``etl.py::etl.py[smoke]``);
- plan files matching ``nbflow_plan_globs``: a collector with one item per task
  (``plan.yaml::task_key``). The plan runs once, as ``nbflow run`` runs it; a task that did not
  run because an upstream task failed or its ``run_if`` was not met is reported *skipped*, with
  the reason.

Each notebook runs as ``nbflow run`` runs it (a fresh kernel; a warm one of the project's cluster
when it runs), with its executed notebook kept under ``processed/pytest-<time>/``. A failure
shows the failing cell's number and title, its source, the traceback, the tail of its output,
the parameters and the executed notebook. JUnit (``--junitxml``) gets properties: status, exit
value, duration, failing cell, executed notebook. With ``--nbflow-golden`` each result is also
checked against the golden store (:mod:`nbflow.testing.golden`).

Parameter sets: ``nbflow.params.yaml`` beside the notebooks maps a notebook's file name to named
sets (``{etl.py: {smoke: {rows: "100"}}}``), or an ``.ipynb`` keeps them in its metadata
(``nbflow.parameter_sets``). Markers: an ``.ipynb``'s ``nbflow.markers`` metadata, or a line
``# nbflow-markers: slow, nightly`` (``-- ...`` in SQL) in a source notebook's first cell.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import time
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import InputError, NbflowError
from ..notebooks import is_source_notebook, source_header
from ..project import (
    PROCESSED,
    STATE_DIR,
    processed_dir,
    project_dir,
    remote_stage_dir,
    secrets_file,
    worker_project,
)
from ..results import PAYLOAD_KEY
from ..runs import NOT_RUN, SUCCEEDED, NotebookResult, PlanRun
from . import tables
from .differences import Options
from .golden import DEFAULT_LEVELS, GOLDEN_DIR, MODES, GoldenResult, check, layers_for, parse_levels
from .render import render, summary_line
from .sanitize import ANSI, Rule, Sanitizer, nbval_rules
from .snapshot import Snapshot, cell_label, executed_cell, notebook_snapshot, result_layer, text_of

if TYPE_CHECKING:
    from ..plan import Plan

PARAMS_FILE = "nbflow.params.yaml"
DEFAULT_SET = ""
_MARKERS_LINE = re.compile(r"^\s*(?:#|--)\s*nbflow-markers:\s*(.+)$", re.M)
OUTPUT_TAIL_LINES = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nbflow", "notebooks and plans, run by nbflow")
    group.addoption("--nbflow", action="store_true", help="Collect and run notebooks and plans as tests.")
    group.addoption("--nbflow-timeout", type=float, metavar="S", help="Stop a notebook after S seconds (TIMEDOUT).")
    group.addoption("--nbflow-param", action="append", default=[], metavar="NAME=VALUE",
                    help="A parameter (widget value) for every notebook, wins over parameter sets; "
                         "for a plan that declares it, a job parameter.")
    group.addoption("--nbflow-engine", default="auto", metavar="auto|sail|spark|sc://HOST:PORT",
                    help="Cluster engine if a notebook needs Spark and no cluster runs.")
    group.addoption("--nbflow-secrets", metavar="FILE", help="Secrets file for dbutils.secrets.")
    group.addoption("--nbflow-cwd", metavar="notebook|rootdir|DIR",
                    help="Where a notebook item's kernel runs [default: notebook, its own folder, as on Databricks].")
    group.addoption("--nbflow-plan-mode", choices=("sequential", "parallel"), default="parallel",
                    help="How a plan's tasks run.")
    group.addoption("--nbflow-target", default="local", metavar="local|databricks[:PROFILE]",
                    help="Where items run: here, or in a Databricks workspace through the remote adapter "
                         "(databricks-sdk; PROFILE from ~/.databrickscfg, else DATABRICKS_HOST/TOKEN).")
    group.addoption("--nbflow-isolate", choices=("worker", "none"),
                    help="Under pytest-xdist, each worker in a project of its own (its catalog, tables and "
                         "cluster) [default: worker under xdist].")
    group.addoption("--nbflow-golden", choices=MODES, help="Golden results: check, update, update-missing, off.")
    group.addoption("--nbflow-golden-level", metavar="L1,L2",
                    help=f"What the golden check compares (errors, result, tables, outputs) "
                         f"[default: {','.join(DEFAULT_LEVELS)}].")
    group.addoption("--nbflow-golden-dir", metavar="DIR", help=f"The golden store [default: <rootdir>/{GOLDEN_DIR}].")
    group.addoption("--nbflow-sanitize", action="append", default=[], metavar="PATTERN=>REPL",
                    help="A regular expression replaced before golden comparisons. Repeatable.")
    group.addoption("--nbflow-sanitize-with", action="append", default=[], metavar="FILE",
                    help="An nbval sanitizer file (regex: / replace: line pairs). Repeatable.")
    group.addoption("--nbflow-cov", action="append", default=[], metavar="SOURCE",
                    help="Measure the coverage of SOURCE (a package or folder) as notebooks import it, "
                         "inside their kernels (coverage.py; combined with pytest-cov's --cov). Repeatable.")
    group.addoption("--nbflow-rtol", type=float, default=0.0, help="Relative tolerance for numbers (goldens).")
    group.addoption("--nbflow-atol", type=float, default=0.0, help="Absolute tolerance for numbers (goldens).")
    group.addoption("--nbflow-max-slowdown", type=float, metavar="X",
                    help="Fail a notebook slower than X times its golden duration (plus 5 s).")
    parser.addini("nbflow", "Collect notebooks and plans (as --nbflow).", type="bool", default=False)
    parser.addini("nbflow_notebook_globs", "File name patterns of notebooks.", type="args",
                  default=["*.ipynb", "*.py", "*.sql"])
    parser.addini("nbflow_plan_globs", "File name patterns of plans.", type="args",
                  default=["plan.yaml", "plan.yml", "*.plan.yaml", "*.plan.yml"])
    parser.addini("nbflow_exclude", "Path patterns (from the rootdir) never collected.", type="args", default=[])
    parser.addini("nbflow_golden", "Golden mode (as --nbflow-golden).", default="off")
    parser.addini("nbflow_golden_level", "Golden levels (as --nbflow-golden-level).", default="")
    parser.addini("nbflow_sanitize", "Sanitizer rules, PATTERN=>REPL, one a line.", type="linelist", default=[])
    parser.addini("nbflow_sanitize_with", "nbval sanitizer files (as --nbflow-sanitize-with).", type="paths",
                  default=[])
    parser.addini("nbflow_cwd", "Where notebook items run (as --nbflow-cwd).", default="notebook")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nbflow: a notebook or plan task run by nbflow")
    if _enabled(config):
        # Options checked (one line for a bad one) and a worker's project made, once a process.
        try:
            config._nbflow_session = _Session(config)  # type: ignore[attr-defined]
        except NbflowError as exc:
            raise pytest.UsageError(f"nbflow: {exc}") from None


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("nbflow") or config.getini("nbflow"))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if not _enabled(config) or _excluded(file_path, config):
        return None
    name = file_path.name
    if any(fnmatch.fnmatch(name, g) for g in config.getini("nbflow_plan_globs")):
        return PlanFile.from_parent(parent, path=file_path)
    if not any(fnmatch.fnmatch(name, g) for g in config.getini("nbflow_notebook_globs")):
        return None
    if file_path.suffix == ".ipynb" and not _executed_by_nbflow(file_path):
        return NotebookFile.from_parent(parent, path=file_path)
    if file_path.suffix in (".py", ".sql") and is_source_notebook(file_path):
        return NotebookFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A source notebook named on the command line is not a Python module to import (pytest
    collects every ``.py`` file given as an argument): this plugin's item runs it instead."""
    if _enabled(parent.config) and is_source_notebook(module_path):
        return _NotAModule.from_parent(parent, path=module_path)
    return None


class _NotAModule(pytest.File):
    def collect(self) -> list[pytest.Item]:
        return []


def _excluded(path: Path, config: pytest.Config) -> bool:
    relative = _relative(path, config)
    if {PROCESSED, STATE_DIR, GOLDEN_DIR, ".ipynb_checkpoints"} & set(Path(relative).parts):
        return True  # nbflow's own outputs and state: never tests
    return any(fnmatch.fnmatch(relative, pattern) for pattern in config.getini("nbflow_exclude"))


def _relative(path: Path, config: pytest.Config) -> str:
    """The path from the rootdir; one outside it keeps its own path under ``external/``, so that
    the golden and output folders made from it stay inside theirs."""
    try:
        return str(path.resolve().relative_to(config.rootpath.resolve()))
    except ValueError:
        return str(Path("external", *path.resolve().parts[1:]))


def _executed_by_nbflow(path: Path) -> bool:
    """An executed notebook (copied somewhere) is a result, not a test: it carries the payload."""
    payload = _ipynb_metadata(path)
    return "version" in payload and "status" in payload


# -- what the session shares -----------------------------------------------------------------------
class _Session:
    """The options every item reads, where this session's executed notebooks go, and the
    project its notebooks run in."""

    def __init__(self, config: pytest.Config) -> None:
        from ..cluster import server as cluster_server  # lazy: only with --nbflow

        self.config = config
        home = self.home = project_dir()
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.folder = processed_dir(home) / time.strftime("pytest-%Y%m%d-%H%M%S") / (worker or "")
        self.parameters = dict(_pair(p) for p in config.getoption("nbflow_param"))
        self.timeout: float | None = config.getoption("nbflow_timeout")
        self.engine: str = config.getoption("nbflow_engine")
        self.golden_mode: str = config.getoption("nbflow_golden") or config.getini("nbflow_golden") or "off"
        if self.golden_mode not in MODES:
            raise InputError(f"nbflow_golden = {self.golden_mode!r}: one of {', '.join(MODES)}")
        levels = config.getoption("nbflow_golden_level") or config.getini("nbflow_golden_level")
        self.golden_levels = parse_levels(levels) if levels else DEFAULT_LEVELS
        golden_dir = config.getoption("nbflow_golden_dir")
        self.golden_root = Path(golden_dir).resolve() if golden_dir else config.rootpath / GOLDEN_DIR
        self.max_slowdown: float | None = config.getoption("nbflow_max_slowdown")
        target, _, profile = str(config.getoption("nbflow_target")).partition(":")
        if target not in ("local", "databricks") or (target == "local" and profile):
            raise InputError(f"--nbflow-target {config.getoption('nbflow_target')!r}: local or databricks[:PROFILE]")
        self.remote = target == "databricks"
        cwd = config.getoption("nbflow_cwd") or config.getini("nbflow_cwd") or "notebook"
        self.working_dir: Path | None = None if cwd == "notebook" else \
            config.rootpath if cwd == "rootdir" else Path(cwd).resolve()
        if self.working_dir is not None and not self.working_dir.is_dir():
            raise InputError(f"--nbflow-cwd {cwd!r}: notebook, rootdir or an existing folder")
        self.profile = profile or None
        # The secrets file every notebook and plan task reads (a worker's own project has none).
        secrets = config.getoption("nbflow_secrets") or secrets_file(home)
        if secrets:
            os.environ["NBFLOW_SECRETS_FILE"] = str(Path(secrets).resolve())
        self.project = home
        self.isolated = bool(worker) and (config.getoption("nbflow_isolate") or "worker") == "worker"
        if self.isolated and worker:
            # This worker's own project: fresh each session, its cluster stopped at the end.
            self.project = worker_project(home, worker)
            _stop_cluster(self.project)
            shutil.rmtree(self.project, ignore_errors=True)
            self.project.mkdir(parents=True, exist_ok=True)
            os.environ["NBFLOW_PROJECT_DIR"] = str(self.project)
            _share_warm_kernels()
        files = [*config.getini("nbflow_sanitize_with"), *(Path(f) for f in config.getoption("nbflow_sanitize_with"))]
        rules: list[str | Rule] = [*config.getini("nbflow_sanitize"), *config.getoption("nbflow_sanitize")]
        rules += [rule for file in files for rule in nbval_rules(Path(file))]
        self.options = Options(sanitizer=Sanitizer(rules, roots=[config.rootpath, home, self.project]),
                               rtol=config.getoption("nbflow_rtol"), atol=config.getoption("nbflow_atol"))
        self.coverage_file = _measure_coverage(config)
        # A cluster this session starts (a notebook that uses Spark) stops with it.
        self.cluster_was_running = cluster_server.running(self.project) is not None

    @classmethod
    def of(cls, config: pytest.Config) -> _Session:
        """The session's (made at configure with --nbflow; else, for the fixtures, on first use)."""
        found: _Session | None = getattr(config, "_nbflow_session", None)
        if found is None:
            try:
                found = cls(config)
            except NbflowError as exc:
                raise pytest.UsageError(f"nbflow: {exc}") from None
            config._nbflow_session = found  # type: ignore[attr-defined]
        return found

    @property
    def wants_tables(self) -> bool:
        # A workspace's tables are not the project's: only local runs record what they wrote.
        return not self.remote and self.golden_mode != "off" and "tables" in layers_for(self.golden_levels)

    def golden(self, node: pytest.Item, result: NotebookResult, folder: Path,
               written: list[str] | None = None) -> GoldenResult:
        if result.output:
            snapshot = notebook_snapshot(Path(result.output), result)
        else:  # run in a workspace: the result the Jobs API gives, no executed notebook
            snapshot = Snapshot(result.notebook, "notebook", {"result": result_layer(result)})
        if written is not None:
            snapshot.layers["tables"] = tables.layer(self.project, written)
        outcome = check(snapshot, folder, self.golden_levels, self.golden_mode, self.options, self.max_slowdown)
        if outcome.state != "off":
            node.user_properties.append(("golden", outcome.state))
        return outcome


def _measure_coverage(config: pytest.Config) -> Path | None:
    """With --nbflow-cov, every notebook's kernel measures the sources named (and saves a data
    file beside ``.coverage``; see :mod:`nbflow.runtime.coverage_hook`); the data file's path."""
    sources = config.getoption("nbflow_cov")
    if not sources:
        return None
    import importlib.util  # lazy: only with --nbflow-cov

    from ..runtime.coverage_hook import ENV  # lazy: only with --nbflow-cov

    if importlib.util.find_spec("coverage") is None:
        raise InputError("--nbflow-cov needs coverage.py (pip install coverage)")
    here = config.invocation_params.dir
    # Kernels run in their notebook's folder: folders are made absolute, module names kept, and
    # the configuration is the one the folder pytest starts in has (as pytest-cov reads it).
    source = [str((here / s).resolve()) if (here / s).exists() else s for s in sources]
    rcfile = next((str(here / name) for name in (".coveragerc", "setup.cfg", "tox.ini", "pyproject.toml")
                   if (here / name).is_file() and ("coverage" in (here / name).read_text(errors="replace")
                                                  or name == ".coveragerc")), "")
    import coverage  # lazy: only with --nbflow-cov

    configured = coverage.Coverage(config_file=rcfile or False).get_option("run:data_file")
    data_file = (here / (os.environ.get("COVERAGE_FILE") or str(configured) or ".coverage")).resolve()
    os.environ[ENV] = json.dumps({"data_file": str(data_file), "source": source, "rcfile": rcfile})
    return data_file


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With --nbflow-cov and without pytest-cov's --cov (which merges the kernels' data itself):
    the kernels' data combined into ``.coverage``, and its total."""
    found: _Session | None = getattr(config, "_nbflow_session", None)
    if found is None or found.coverage_file is None or config.pluginmanager.hasplugin("_cov"):
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller combines what every worker's kernels saved
    import io  # lazy: only with --nbflow-cov

    import coverage  # lazy: only with --nbflow-cov (checked installed at configure)

    measured = coverage.Coverage(data_file=str(found.coverage_file))
    measured.combine(keep=False)
    measured.save()
    try:
        total = measured.report(file=io.StringIO())
    except coverage.CoverageException as exc:  # nothing measured: no notebook imported the sources
        terminalreporter.write_line(f"nbflow: no coverage data ({exc})")
        return
    terminalreporter.write_line(f"nbflow: coverage of what notebooks imported: {total:.0f}% "
                                f"({found.coverage_file}; `coverage report -m` shows the lines)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The cluster this session started stops with it (a worker's own project's always; its
    tables stay, to look at); a cluster that was running before is left running."""
    found: _Session | None = getattr(session.config, "_nbflow_session", None)
    if found is None:
        return
    if found.isolated:
        _stop_cluster(found.project)
    elif not found.cluster_was_running:
        from ..pool_client import stop_cluster_if_idle  # lazy: only with --nbflow

        stop_cluster_if_idle(found.project)


def _share_warm_kernels() -> None:
    """A worker's cluster keeps its share of the warm kernels one cluster would keep: the
    workers' clusters run on the same cores (``NBFLOW_POOL_SIZE``, if set, decides instead)."""
    from ..pool_service import sizes  # lazy: only for an xdist worker's own project

    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    at_rest, at_most = sizes()
    os.environ.setdefault("NBFLOW_POOL_SIZE", str(max(2, at_rest // workers)))
    os.environ.setdefault("NBFLOW_POOL_MAX", str(max(2, at_rest // workers, at_most // workers)))


def _stop_cluster(project: Path) -> None:
    from ..cluster import server as cluster_server  # lazy: only with --nbflow

    if cluster_server.running(project) is not None:
        cluster_server.stop(project)


def _pair(text: str) -> tuple[str, str]:
    name, found, value = text.partition("=")
    if not found or not name:
        raise pytest.UsageError(f"--nbflow-param {text!r}: write NAME=VALUE")
    return name, value


# -- notebooks ---------------------------------------------------------------------------------------
class NotebookFile(pytest.File):
    """A notebook: one item, or one per parameter set."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            sets = _parameter_sets(self.path)
        except NbflowError as exc:
            raise pytest.Collector.CollectError(f"{self.path}: {exc}") from None
        markers = _markers(self.path)
        for set_name, values in sets.items():
            name = self.path.name + (f"[{set_name}]" if set_name else "")
            item = NotebookItem.from_parent(self, name=name, set_name=set_name, parameters=values)
            for marker in markers:
                item.add_marker(marker)
            yield item


class NotebookFailed(Exception):
    """The notebook did not succeed: its result tells how."""

    def __init__(self, result: NotebookResult, parameters: Mapping[str, Any]) -> None:
        super().__init__(f"{result.notebook}: {result.status}")
        self.result = result
        self.parameters = dict(parameters)


class GoldenDiffers(Exception):
    def __init__(self, outcome: GoldenResult) -> None:
        super().__init__(f"differs from its golden ({outcome.folder})")
        self.outcome = outcome


class _Item(pytest.Item):
    """What nbflow's items share: the ``nbflow`` marker, and failures told in nbflow's words."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("nbflow")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        return _failure_text(excinfo.value) or super().repr_failure(excinfo, style=style)


class NotebookItem(_Item):
    def __init__(self, *, set_name: str, parameters: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_name = set_name
        self.parameters = dict(parameters)

    def runtest(self) -> None:
        from ..leased_run import run_leased  # lazy: the runner, only when a notebook runs

        session = _Session.of(self.config)
        parameters = {**self.parameters, **session.parameters}
        folder = session.folder / _safe(_relative(self.path, self.config)) / (self.set_name or "default")
        before = tables.versions(session.project) if session.wants_tables else None
        if session.remote:
            from .remote import run_notebook_remote  # lazy: databricks-sdk, only for a workspace

            worker = os.environ.get("PYTEST_XDIST_WORKER", "")
            name = _safe(f"pytest-{worker}-{_relative(self.path, self.config)}-{self.set_name}".replace("--", "-"))
            result = run_notebook_remote(self.path, parameters, remote_stage_dir(session.home, name), name,
                                         session.profile, session.timeout)
        else:
            result = run_leased(self.path, parameters, folder, timeout=session.timeout, engine=session.engine,
                                working_dir=session.working_dir)
        _record(self, result)
        if not result.ok:
            raise NotebookFailed(result, parameters)
        written = None
        if before is not None:  # what changed in the catalog, and what the notebook says it wrote
            written = sorted(set(tables.written(session.project, before)) | set(_tables_written(result)))
        if written:
            self.user_properties.append(("tables_written", ", ".join(written)))
        golden = session.golden(self, result, session.golden_root / _relative(self.path, self.config)
                                / (self.set_name or "default"), written)
        _golden_outcome(golden)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"notebook {self.name}"


def _tables_written(result: NotebookResult) -> list[str]:
    """The tables a notebook and its ``dbutils.notebook.run`` children wrote to."""
    found = set(result.tables_written)
    for child in result.children:
        found.update(child.get("tables_written") or [])
    return sorted(found)


def _golden_outcome(golden: GoldenResult) -> None:
    if golden.state == "missing":
        import warnings  # lazy: rare

        warnings.warn(f"nbflow: no golden {_missing(golden)} (--nbflow-golden=update-missing writes it; "
                      "with CI=true a missing golden fails)", stacklevel=2)
    if golden.failed:
        raise GoldenDiffers(golden)


def _missing(golden: GoldenResult) -> str:
    layers = ", ".join(f"{layer}.json" for layer in golden.missing)
    return f"at {golden.folder}" + (f" ({layers} missing)" if layers else "")


def _record(item: pytest.Item, result: NotebookResult) -> None:
    """The JUnit properties of a notebook's run."""
    item.user_properties.append(("status", str(result.status)))
    if result.duration_s is not None:
        item.user_properties.append(("duration_s", round(result.duration_s, 3)))
    if result.output:
        item.user_properties.append(("executed_notebook", result.output))
    if result.exit_value is not None:
        item.user_properties.append(("exit_value", result.exit_value))
    if result.error is not None and result.error.cell_index is not None:
        item.user_properties.append(("failing_cell", _cell_label(result, result.error.cell_index)))


def _failure_text(error: BaseException) -> str | None:
    if isinstance(error, GoldenDiffers):
        o = error.outcome
        if o.state == "missing-in-ci":
            return (f"no golden {_missing(o)}, and CI is set: write it with --nbflow-golden=update-missing, "
                    "review it and commit it")
        text = render("term", str(o.folder), "this run", o.differences, o.differences)
        return f"differs from its golden: {summary_line(o.differences, o.differences)}\n{text}\n" \
               f"(--nbflow-golden=update accepts this run as the golden)"
    if isinstance(error, NotebookFailed):
        return describe_failure(error.result, error.parameters)
    if isinstance(error, NbflowError):
        return f"nbflow: {error}"
    return None


def describe_failure(result: NotebookResult, parameters: Mapping[str, Any]) -> str:
    """What a failed notebook shows: where, why, the cell's source, traceback and output."""
    lines = [f"{result.notebook}: {result.status}"]
    cell = None
    if result.error is not None:
        index = result.error.cell_index
        cell = executed_cell(result, index)
        where = "" if index is None else f" in {cell_label(index, cell or {})}"
        lines[0] += f"{where}: {result.error.ename}: {result.error.evalue}"
    if cell is not None:
        lines += ["", "--- source ---", text_of(cell.get("source")).rstrip()]
    if result.error is not None and result.error.traceback:
        lines += ["", "--- traceback ---", ANSI.sub("", "\n".join(result.error.traceback)).rstrip()]
    if cell is not None:
        printed = "".join(text_of(o.get("text")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if printed.strip():
            tail = printed.rstrip().splitlines()[-OUTPUT_TAIL_LINES:]
            lines += ["", f"--- output (last {len(tail)} lines) ---", ANSI.sub("", "\n".join(tail))]
    lines += [""]
    if parameters:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in parameters.items()))
    lines.append(f"executed notebook: {result.output}")
    return "\n".join(lines)


def _cell_label(result: NotebookResult, index: int) -> str:
    return cell_label(index, executed_cell(result, index) or {})


def _safe(relative: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", relative)


def _parameter_sets(path: Path) -> dict[str, dict[str, Any]]:
    """The named parameter sets of a notebook (one unnamed set when it has none)."""
    sets: Any = None
    sidecar = path.parent / PARAMS_FILE
    if sidecar.is_file():
        from ..documents import read_document  # lazy: only where a sidecar exists

        data = read_document(sidecar, "parameter sets", InputError).data
        sets = data.get(path.name) if isinstance(data, dict) else None
    if sets is None and path.suffix == ".ipynb":
        sets = _ipynb_metadata(path).get("parameter_sets")
    if not sets:
        return {DEFAULT_SET: {}}
    if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
        raise InputError(f"parameter sets are a mapping of set name to parameters ({PARAMS_FILE} or metadata)")
    return {str(k): dict(v) for k, v in sets.items()}


def _markers(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        found = _ipynb_metadata(path).get("markers") or []
        return [str(m) for m in found] if isinstance(found, list) else []
    header = source_header(path.suffix) or ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    first_cell = text.removeprefix(header).split("COMMAND ----------", 1)[0]
    match = _MARKERS_LINE.search(first_cell)
    return [m for m in re.split(r"[,\s]+", match.group(1)) if m] if match else []


def _ipynb_metadata(path: Path) -> dict[str, Any]:
    """nbflow's metadata of a ``.ipynb`` (read-only): parsed once per file version, though
    collection asks three times (executed?, parameter sets, markers)."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    return _parsed_metadata(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _parsed_metadata(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {}).get(PAYLOAD_KEY, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


# -- plans ------------------------------------------------------------------------------------------
class PlanFile(pytest.File):
    """A plan: one item per task; the plan runs once, when its first task item runs."""

    run: PlanRun | None = None
    failure: str | None = None  # why the plan could not run (said by each of its items)
    declared: set[str]  # the plan's job parameters (set by collect)
    plan: Plan  # set by collect
    wanted: set[str] | None = None  # the tasks to run (None: all), from the items selected

    def collect(self) -> Iterator[pytest.Item]:
        from ..plan import load_plan  # lazy: pydantic's models, only when a plan is collected

        try:
            plan, _ = load_plan(self.path)
        except NbflowError as exc:
            raise pytest.Collector.CollectError(f"{self.path}: {exc}") from None
        self.declared = {p.name for p in plan.parameters}
        self.plan = plan
        text = self.path.read_text(encoding="utf-8", errors="replace")
        for task in plan.tasks:
            # Where the task is written: a skipped task's report points there.
            found = re.search(rf"^[\s-]*[\"']?task_key[\"']?\s*:\s*[\"']?{re.escape(task.task_key)}[\"']?\s*,?\s*$",
                              text, re.M)
            line = text.count("\n", 0, found.start()) if found else None
            item = TaskItem.from_parent(self, name=task.task_key, line=line)
            # Under pytest-xdist with --dist loadgroup, a plan's tasks stay on one worker: one run.
            item.add_marker(pytest.mark.xdist_group(_relative(self.path, self.config)))
            yield item
        session = _Session.of(self.config)
        if session.golden_mode != "off" and "plan" in layers_for(session.golden_levels):
            # The plan as a whole against its golden: which tasks ran, were skipped or failed.
            whole = PlanItem.from_parent(self, name=PLAN_ITEM)
            whole.add_marker(pytest.mark.xdist_group(_relative(self.path, self.config)))
            yield whole

    def plan_run(self) -> PlanRun:
        if self.failure is not None:
            pytest.fail(self.failure, pytrace=False)
        if self.run is None:
            from ..plan_runner import run_plan  # lazy: the scheduler, only when a plan runs

            session = _Session.of(self.config)
            # --nbflow-param values the plan declares are its job parameters (the others are
            # for notebooks; a plan refuses parameters it does not declare).
            job = {k: v for k, v in session.parameters.items() if k in self.declared}
            try:
                if session.remote:
                    from .remote import run_plan_remote  # lazy: databricks-sdk, only for a workspace

                    self.run = run_plan_remote(self.path, self.config.getoption("nbflow_plan_mode"), job,
                                               session.profile)
                    return self.run
                self.run = run_plan(self.path, mode=self.config.getoption("nbflow_plan_mode"), job_parameters=job,
                                    only=sorted(self.wanted or ()),
                                    output_dir=session.folder / _safe(_relative(self.path, self.config)),
                                    cluster_engine=session.engine, base_dir=self.path.parent)
            except NbflowError as exc:  # the plan could not run at all: each task says why, once run
                self.failure = f"{self.path}: {exc}"
                pytest.fail(self.failure, pytrace=False)
        return self.run


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A plan runs only the tasks whose items are selected, and what they depend on (all of
    it when the whole plan's item is selected, or every task)."""
    chosen: dict[PlanFile, set[str]] = {}
    for item in items:
        if isinstance(item.parent, PlanFile) and isinstance(item, TaskItem | PlanItem):
            chosen.setdefault(item.parent, set()).add(item.name)
    for plan_file, names in chosen.items():
        tasks = {t.task_key for t in plan_file.plan.tasks}
        if PLAN_ITEM in names or names >= tasks:
            continue
        plan_file.wanted = names | {key for name in names for key in plan_file.plan.upstream(name)}


PLAN_ITEM = "(plan)"  # no task key can be this: keys are letters, digits, _ and -


class PlanItem(_Item):
    """Each task's state and the job's result, against the plan's golden ``(plan)/plan.json``:
    a task that now is skipped, or excluded by its ``run_if``, where it ran before, differs."""

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, PlanFile)
        run = parent.plan_run()
        session = _Session.of(self.config)
        self.user_properties.append(("status", str(run.result_state)))
        layer = {"result_state": str(run.result_state),
                 "tasks": {key: str(task.status) for key, task in sorted(run.tasks.items())}}
        outcome = check(Snapshot(str(self.path), "plan", {"plan": layer}),
                        session.golden_root / _relative(self.path, self.config) / PLAN_ITEM,
                        session.golden_levels, session.golden_mode, session.options, None)
        if outcome.state != "off":
            self.user_properties.append(("golden", outcome.state))
        _golden_outcome(outcome)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"plan {self.path.name}"


class TaskItem(_Item):
    def __init__(self, *, line: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.line = line  # 0-based, of the task's task_key in the plan file

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, PlanFile)
        run = parent.plan_run()
        task = run.tasks[self.name]
        result = task.last.result if task.last else None
        if result is None:
            self.user_properties.append(("status", str(task.status)))
        if task.status in NOT_RUN:
            pytest.skip(f"{self.name}: not run: {task.reason or NOT_RUN[task.status]}")
        if result is not None:
            _record(self, result)
        if task.status not in SUCCEEDED:
            if result is not None:
                raise NotebookFailed(result, dict(task.task.parameters))
            pytest.fail(f"{self.name}: {task.status}" + (f": {task.reason}" if task.reason else ""),
                        pytrace=False)
        if result is None:
            return
        session = _Session.of(self.config)
        # The tables the task's notebook (and its notebook.run children) wrote, as they are once
        # the plan has ended: tasks may run at once, so the catalog's changes are not one task's.
        written = _tables_written(result) if session.wants_tables else None
        if written is not None and parent.wanted is not None and parent.plan.downstream(self.name) - parent.wanted:
            # The golden holds the tables as the whole plan left them; tasks after this one that
            # may change them did not run (-k/-m): comparing them would be comparing two things.
            self.user_properties.append(("tables", "not compared: tasks after it were not selected"))
            written = None
        if written:
            self.user_properties.append(("tables_written", ", ".join(written)))
        golden = session.golden(self, result, session.golden_root / _relative(self.path, self.config) / self.name,
                                written)
        _golden_outcome(golden)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.line, f"plan task {self.name}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if isinstance(item, TaskItem) and report.skipped and isinstance(report.longrepr, tuple):
        # A task not run is skipped where the plan declares it, not where this plugin said so.
        path, line, _ = item.reportinfo()
        report.longrepr = (str(path), (line or 0) + 1, report.longrepr[2])
    return report


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture
def nbflow_run(request: pytest.FixtureRequest) -> Any:
    """``nbflow_run(path, parameters=None, *, timeout=None)``: run a notebook (its
    :class:`~nbflow.runs.NotebookResult`) or a plan file (its :class:`~nbflow.runs.PlanRun`) as
    ``nbflow run`` does, its executed notebooks kept in this session's folder."""
    session = _Session.of(request.config)
    counter = iter(range(1, 10_000))

    def run(path: str | Path, parameters: Mapping[str, Any] | None = None, *,
            timeout: float | None = None, mode: str = "sequential") -> NotebookResult | PlanRun:
        path = Path(path)
        folder = session.folder / _safe(request.node.nodeid) / f"{next(counter):03d}-{path.stem}"
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            from ..plan_runner import run_plan  # lazy: the scheduler, only when a plan runs

            return run_plan(path, mode=mode, job_parameters=parameters, output_dir=folder,
                            cluster_engine=session.engine, base_dir=path.parent)
        from ..leased_run import run_leased  # lazy: as NotebookItem.runtest

        # The test's own parameters win over --nbflow-param's.
        return run_leased(path, {**session.parameters, **(parameters or {})}, folder,
                          timeout=timeout or session.timeout, engine=session.engine, working_dir=session.working_dir)

    return run


@pytest.fixture
def nbflow_golden(request: pytest.FixtureRequest) -> Any:
    """``nbflow_golden(result, name="default", levels="result,tables")``: check a
    :class:`~nbflow.runs.NotebookResult` against the golden store (folder: the test's node id,
    then ``name``), as ``--nbflow-golden`` says (``check`` when it is off: the test asked for it)."""
    session = _Session.of(request.config)

    def golden(result: NotebookResult, name: str = "default", levels: str | None = None) -> GoldenResult:
        mode = session.golden_mode if session.golden_mode != "off" else "check"
        outcome = check(notebook_snapshot(Path(str(result.output)), result),
                        session.golden_root / _safe(request.node.nodeid) / name,
                        parse_levels(levels) if levels else session.golden_levels, mode, session.options,
                        session.max_slowdown)
        if outcome.failed or outcome.state == "missing":
            raise AssertionError(_failure_text(GoldenDiffers(outcome)) if outcome.failed else
                                 f"no golden at {outcome.folder}: --nbflow-golden=update-missing writes it")
        return outcome

    return golden
