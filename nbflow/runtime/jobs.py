"""``dbutils.jobs.taskValues``: small JSON values a task passes to the tasks after it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ..errors import TaskValueError
from .help import show

TASK_VALUE_LIMIT_BYTES = 48 * 1024
_OUTSIDE_JOB = "Must pass debugValue when calling get outside of a job context. debugValue cannot be None."


def warn_if_redacted(what: str, value: Any, redact: Callable[[Any], Any]) -> None:
    """Say so when a value passed on holds a secret: the next task gets ``[REDACTED]``, as on
    Databricks, and without this line nothing tells the writer why."""
    if redact(value) != value:
        print(f"nbflow: {what} contains a secret value; it is passed on as [REDACTED] (as on Databricks)",
              file=sys.stderr)


class TaskValues:
    def __init__(self, upstream: dict[str, dict[str, Any]] | None,
                 redact: Callable[[Any], Any] | None = None) -> None:
        # None means the notebook is not running as a job task (an interactive-style run).
        self._upstream = upstream
        self._redact = redact
        self.values: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        """Set a task value: JSON-serialisable, at most 48 KiB as JSON."""
        if not isinstance(key, str):
            raise TypeError(f"task value key must be a string, got {type(key).__name__}")
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TaskValueError(f"task value {key!r} is not JSON-serialisable: {exc}") from None
        if len(encoded.encode("utf-8")) > TASK_VALUE_LIMIT_BYTES:
            raise TaskValueError(
                f"task value {key!r} is {len(encoded.encode('utf-8'))} bytes as JSON; the limit is 48 KiB"
            )
        self.values[key] = json.loads(encoded)
        if self._redact is not None:
            warn_if_redacted(f"task value {key!r}", self.values[key], self._redact)

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:
        """Read a value set by an upstream task; outside a job, returns ``debugValue``."""
        if self._upstream is None:
            if debugValue is None:
                raise TypeError(_OUTSIDE_JOB)
            return debugValue
        if taskKey not in self._upstream:
            raise TaskValueError(f"No task named {taskKey!r} upstream of this task set task values")
        values = self._upstream[taskKey]
        if key in values:
            return values[key]
        if default is not None:
            return default
        raise TaskValueError(f"Task {taskKey!r} set no task value named {key!r}")

    def help(self, method: str = "") -> None:
        show("dbutils.jobs.taskValues", self, method)


class JobsUtils:
    def __init__(self, upstream: dict[str, dict[str, Any]] | None,
                 redact: Callable[[Any], Any] | None = None) -> None:
        self.taskValues = TaskValues(upstream, redact)

    def help(self, method: str = "") -> None:
        print("dbutils.jobs (nbflow local runtime): taskValues")
        self.taskValues.help(method)
