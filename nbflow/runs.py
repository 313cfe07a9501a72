"""The run model: a plan run, its task runs and their attempts, a notebook's result, their states.

Plain data and pure rules on it (``decide`` for ``run_if``, ``job_result`` for a job's result):
the scheduler fills it in; reports, ``compare``, the remote adapter and the local workspace read
it. States are :class:`str` enums whose values are the Jobs API's strings, so the JSON and the
reports made from them read exactly as the API's. :class:`CellError` is the one record of why a
notebook stopped; it crosses process boundaries as JSON (``to_json``/``from_json``).

This module imports only the standard library at run time (the plan types are for annotations),
so code in a kernel may import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from .plan import Plan, Task


class JobsApiString(str, Enum):
    """A state spelled as the Jobs API spells it. ``str()`` and f-strings give that spelling
    (a plain ``str`` mix-in gives ``Class.NAME`` since Python 3.11; ``enum.StrEnum`` is 3.11+)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class LifeCycleState(JobsApiString):
    """Where a run or task is in its life (the Jobs API's ``RunLifeCycleState``)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    SKIPPED = "SKIPPED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    BLOCKED = "BLOCKED"
    WAITING_FOR_RETRY = "WAITING_FOR_RETRY"
    # nbflow's own, never sent by the API: a remote task that reported no state nbflow knows.
    UNKNOWN = "UNKNOWN"


class ResultState(JobsApiString):
    """How a finished run, task or attempt ended (the Jobs API's ``RunResultState``)."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"
    CANCELED = "CANCELED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    UPSTREAM_CANCELED = "UPSTREAM_CANCELED"
    EXCLUDED = "EXCLUDED"
    SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
    DISABLED = "DISABLED"
    MAXIMUM_CONCURRENT_RUNS_REACHED = "MAXIMUM_CONCURRENT_RUNS_REACHED"


# A task is PENDING, then RUNNING (life-cycle states), then has its result state; a remote run
# may report other life-cycle states (SKIPPED, INTERNAL_ERROR) where it has no result.
TaskState: TypeAlias = LifeCycleState | ResultState

# The members under their own names, as the scheduler and the engine use them (as ``signal``
# exports ``SIGINT`` beside ``Signals.SIGINT``): the same objects, not copies.
PENDING, RUNNING = LifeCycleState.PENDING, LifeCycleState.RUNNING
SUCCESS, FAILED = ResultState.SUCCESS, ResultState.FAILED
TIMEDOUT, CANCELED = ResultState.TIMEDOUT, ResultState.CANCELED
UPSTREAM_FAILED, UPSTREAM_CANCELED = ResultState.UPSTREAM_FAILED, ResultState.UPSTREAM_CANCELED
EXCLUDED, SUCCESS_WITH_FAILURES = ResultState.EXCLUDED, ResultState.SUCCESS_WITH_FAILURES

SUCCEEDED = frozenset({SUCCESS, EXCLUDED})  # "Excluded tasks are skipped and treated as successful."
FAILED_STATES = frozenset({FAILED, TIMEDOUT, UPSTREAM_FAILED})
CANCELED_STATES = frozenset({CANCELED, UPSTREAM_CANCELED})
FAILURE_HANDLERS = frozenset({"ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED"})  # run_if values
# The states of a task that did not run, and why (reports of tests show them as skipped).
NOT_RUN: dict[TaskState, str] = {
    UPSTREAM_FAILED: "an upstream task failed", UPSTREAM_CANCELED: "an upstream task was cancelled",
    EXCLUDED: "its run_if condition was not met", ResultState.DISABLED: "it is disabled"}


def task_state(text: str) -> TaskState:
    """The state a Jobs API string names (a result state first: RUNNING and the like are life-cycle
    states only). A string the API added after this list is UNKNOWN rather than an error: a
    report of a remote run must not fail on it."""
    if text in ResultState.__members__:
        return ResultState(text)
    if text in LifeCycleState.__members__:
        return LifeCycleState(text)
    return LifeCycleState.UNKNOWN


@dataclass(frozen=True)
class CellError:
    """Where and why a notebook stopped: the user cell index (0-based, None when no cell was at
    fault), the error's name and message, and the cell's traceback when there was one."""

    cell_index: int | None
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What summaries, ``run.json`` and the reports show: where and why, no traceback."""
        return {"cell_index": self.cell_index, "ename": self.ename, "evalue": self.evalue}

    def to_json(self) -> dict[str, Any]:
        """The whole record as JSON data (the executed notebook's payload keeps the traceback)."""
        return {**self.summary(), "traceback": list(self.traceback)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellError:
        """From :meth:`to_json` or :meth:`summary` data."""
        index = data.get("cell_index")
        return cls(None if index is None else int(index), str(data.get("ename")), str(data.get("evalue")),
                   tuple(str(line) for line in data.get("traceback") or ()))


@dataclass
class NotebookResult:
    """What one notebook run produced."""

    notebook: str
    output: str | None
    status: TaskState
    exit_value: str | None = None
    exit_truncated: bool = False
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_values: dict[str, Any] = field(default_factory=dict)
    error: CellError | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables_written: list[str] = field(default_factory=list)  # catalog.schema.table, by this notebook
    run_id: str = ""
    task_key: str = ""
    start_time: str | None = None
    end_time: str | None = None
    duration_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    def variable(self, name: str) -> Any:
        """The JSON value of a captured variable (KeyError if absent or not JSON)."""
        entry = self.variables[name]
        if "value" not in entry:
            raise KeyError(f"variable {name!r} ({entry['type']}) has no JSON value; its repr is {entry['repr']!r}")
        return entry["value"]

    def task_summary(self) -> dict[str, Any]:
        """One entry of the ``tasks`` list of the ``--json`` summary."""
        return {
            "task_key": self.task_key,
            "notebook": self.notebook,
            "status": str(self.status),
            "exit_value": self.exit_value,
            "output": self.output,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "error": None if self.error is None else self.error.summary(),
        }

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON data (``output`` too: where the notebook is, not what it holds)."""
        data = asdict(self)
        data["status"] = str(self.status)  # a member prints its value; a plain string (built by hand) is kept
        data["error"] = None if self.error is None else self.error.to_json()
        return data


@dataclass
class Attempt:
    """One try of a task: its state, its times (epoch ms), its executed notebook and result."""

    number: int
    status: TaskState
    start_ms: int
    end_ms: int
    output: str | None
    result: NotebookResult | None = None
    error: CellError | None = None
    setup_ms: int = 0  # waiting for a worker with a warm kernel


@dataclass
class TaskRun:
    """A task of a plan run: its state and attempts."""

    task: Task
    run_id: int
    status: TaskState = PENDING
    attempts: list[Attempt] = field(default_factory=list)
    reason: str = ""  # why a task did not run (run_if, disabled, cancelled)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


# How a plan's tasks are run: one at a time in the plan's order, or every ready task at once.
MODES = ("sequential", "parallel")


@dataclass
class PlanRun:
    """A run of a plan: its tasks' runs, its result once it ended ("" before)."""

    plan: Plan
    run_id: str
    output_dir: Path
    mode: str
    tasks: dict[str, TaskRun]
    start_ms: int = 0
    end_ms: int = 0
    result_state: TaskState | Literal[""] = ""
    job_parameters: dict[str, str] = field(default_factory=dict)
    resume_from: list[str] = field(default_factory=list)
    cleanup_ms: int = 0  # stopping the worker pool after the last task


# -- run_if --------------------------------------------------------------------------------------
def decide(run_if: str, deps: Iterable[str]) -> tuple[bool, ResultState | Literal[""]]:
    """Whether a task runs given its dependencies' final states; else the state it takes ("" when
    it runs)."""
    deps = list(deps)
    if deps and all(d == EXCLUDED for d in deps):
        return False, EXCLUDED  # "If all task dependencies are excluded, the task is also excluded"
    if any(d in CANCELED_STATES for d in deps) and run_if not in FAILURE_HANDLERS:
        return False, UPSTREAM_CANCELED
    succeeded = sum(d in SUCCEEDED for d in deps)
    failed = sum(d in FAILED_STATES for d in deps)
    executed = sum(d == SUCCESS for d in deps)
    rules: dict[str, tuple[bool, ResultState | Literal[""]]] = {
        "ALL_SUCCESS": (succeeded == len(deps), UPSTREAM_FAILED),
        "AT_LEAST_ONE_SUCCESS": (succeeded > 0, UPSTREAM_FAILED),
        "NONE_FAILED": (failed == 0 and executed > 0, UPSTREAM_FAILED),
        "ALL_DONE": (True, ""),
        "AT_LEAST_ONE_FAILED": (failed > 0, EXCLUDED),
        "ALL_FAILED": (failed == len(deps), EXCLUDED),
    }
    run, otherwise = rules[run_if]
    return (True, "") if (run or not deps) else (False, otherwise)


def job_result(tasks: Mapping[str, TaskRun], deps: Mapping[str, list[str]]) -> ResultState:
    """SUCCESS, SUCCESS_WITH_FAILURES, CANCELED, TIMEDOUT or FAILED, decided by the leaf tasks
    (the Jobs API's rule)."""
    downstream = {d for ds in deps.values() for d in ds}
    leaves = [k for k in tasks if k not in downstream]
    if all(t.status in SUCCEEDED for t in tasks.values()):
        return SUCCESS
    if any(tasks[k].status in CANCELED_STATES for k in leaves) and not any(
        tasks[k].status in FAILED_STATES for k in leaves
    ):
        return CANCELED
    if all(tasks[k].status in SUCCEEDED for k in leaves):
        return SUCCESS_WITH_FAILURES
    if any(tasks[k].status == TIMEDOUT for k in leaves) and not any(tasks[k].status == FAILED for k in leaves):
        return TIMEDOUT
    return FAILED
