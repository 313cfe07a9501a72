"""The plan model: a job of notebook tasks, as pydantic models mirroring a Databricks job.

A plan has ``name``, ``parameters``, ``timeout_seconds``, ``max_concurrent_runs``, ``schedule``
and ``tasks`` with ``task_key``, ``depends_on``, ``run_if``, retries and timeouts, so that the
same plan can be sent to a workspace. The models check each field; the checks that need the
whole plan (keys, dependencies, notebooks, references) are in :mod:`nbflow.plan.checks`.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import quartz

RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED")
RunIf = Literal["ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED",
                "ALL_FAILED"]
_TASK_KEY = r"^[\w\-]{1,100}$"


class _Strict(BaseModel):
    # Python's re for the field patterns: pydantic's default Rust engine spends about 0.1 s at
    # import compiling the Unicode \w{1,100} of a task key, on every command that reads a plan.
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")


class JobParameter(_Strict):
    """A job parameter: pushed down to every task as a widget value; wins over task parameters."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    default: str | int | float | bool | None = ""


class Schedule(_Strict):
    """Kept for the remote side (Jobs API ``schedule``); a local run does not schedule itself."""

    quartz_cron_expression: str
    timezone_id: str = "UTC"
    pause_status: Literal["PAUSED", "UNPAUSED"] = "UNPAUSED"

    @field_validator("quartz_cron_expression")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = quartz.problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone_id")
    @classmethod
    def _zone(cls, value: str) -> str:
        problem = quartz.zone_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Cluster(_Strict):
    """The all-purpose cluster ``nbflow remote deploy`` creates for the plan (Clusters API fields);
    options given to deploy win over these. A local run uses only ``autotermination_minutes``,
    for the local cluster's pool service when the run starts it."""

    spark_version: str | None = None  # e.g. 16.4.x-scala2.12; default: the workspace's latest LTS
    node_type_id: str | None = None  # default: the smallest node type the workspace offers
    num_workers: int = Field(default=1, ge=0)
    autotermination_minutes: int = Field(default=30, ge=0, le=10000)
    spark_conf: dict[str, str] = Field(default_factory=dict)
    custom_tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("autotermination_minutes")
    @classmethod
    def _minutes(cls, value: int) -> int:
        if 0 < value < 10:
            raise ValueError("0 (never) or 10 to 10000 minutes, as the Clusters API accepts")
        return value


class Task(_Strict):
    task_key: str = Field(pattern=_TASK_KEY)
    notebook: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    run_if: RunIf = "ALL_SUCCESS"
    timeout_seconds: int = Field(default=0, ge=0)
    max_retries: int = Field(default=0, ge=-1)
    min_retry_interval_millis: int = Field(default=0, ge=0)
    retry_on_timeout: bool = False
    disabled: bool = False

    @field_validator("depends_on", mode="before")
    @classmethod
    def _deps(cls, value: Any) -> Any:
        # The Jobs API writes [{"task_key": "a"}]; plans may write ["a"] or "a".
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v.get("task_key") if isinstance(v, dict) and set(v) <= {"task_key", "outcome"} else v
                    for v in value]
        return value


class Plan(_Strict):
    name: str
    description: str = ""
    parameters: list[JobParameter] = Field(default_factory=list)
    timeout_seconds: int = Field(default=0, ge=0)
    max_concurrent_runs: int = Field(default=1, ge=0, le=1000)
    schedule: Schedule | None = None
    cluster: Cluster | None = None
    tasks: list[Task] = Field(min_length=1)

    @field_validator("parameters", mode="before")
    @classmethod
    def _params(cls, value: Any) -> Any:
        if isinstance(value, dict):  # {name: default} is the short way to write them
            return [{"name": k, "default": v} for k, v in value.items()]
        return value

    # -- derived ------------------------------------------------------------------------------
    @cached_property
    def _by_key(self) -> dict[str, Task]:
        # The first of duplicate keys wins, as validation reports the later ones.
        found: dict[str, Task] = {}
        for t in self.tasks:
            found.setdefault(t.task_key, t)
        return found

    @cached_property
    def _dependents(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {t.task_key: [] for t in self.tasks}
        for t in self.tasks:
            for dep in dict.fromkeys(t.depends_on):  # a dependency named twice is one edge
                found.setdefault(dep, []).append(t.task_key)
        return found

    def task(self, key: str) -> Task:
        """The task named ``key`` (KeyError if none)."""
        return self._by_key[key]

    def order(self) -> list[str]:
        """A stable topological order: dependencies first, then the order of the file.

        Layer by layer: the tasks ready together are taken in the file's order, then those they
        made ready. Each task and edge is looked at once.
        """
        position = {t.task_key: i for i, t in enumerate(self.tasks)}
        waiting = {t.task_key: len(set(t.depends_on) & position.keys()) for t in self.tasks}
        layer = [k for k, n in waiting.items() if n == 0]
        order: list[str] = []
        while layer:
            layer.sort(key=position.__getitem__)
            order += layer
            after = []
            for key in layer:
                for dependent in self._dependents.get(key, []):
                    waiting[dependent] -= 1
                    if waiting[dependent] == 0:
                        after.append(dependent)
            layer = after
        if len(order) < len(waiting):
            # Rare (validation refuses cycles): graphlib's CycleError names one, as callers expect.
            graphlib.TopologicalSorter({t.task_key: t.depends_on for t in self.tasks}).prepare()
            raise graphlib.CycleError("the plan's dependencies form a cycle", [])
        return order

    def upstream(self, key: str) -> set[str]:
        """Every task ``key`` depends on, directly or not (each task and edge looked at once)."""
        return _reach(self.task(key).depends_on, lambda k: self._by_key[k].depends_on)

    def downstream(self, key: str) -> set[str]:
        """Every task that depends on ``key``, directly or not."""
        return _reach(self._dependents.get(key, []), lambda k: self._dependents.get(k, []))


def _reach(start: list[str], neighbours: Callable[[str], list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        key = stack.pop()
        if key not in seen:
            seen.add(key)
            stack += neighbours(key)
    return seen
