"""Plans: jobs of notebook tasks, loaded from YAML or JSON and validated before anything runs.

A plan mirrors a Databricks job (``name``, ``parameters``, ``timeout_seconds``,
``max_concurrent_runs``, ``schedule``, ``tasks`` with ``task_key``, ``depends_on``, ``run_if``,
retries and timeouts), so that the same plan can be sent to a workspace. A job definition in the
Jobs API's own JSON shape loads too (see :func:`from_jobs_api`).

Every problem is reported at once, each as ``FILE:LINE: field.path: message``.
"""

from __future__ import annotations

import graphlib
import json
import re
from collections.abc import Callable, Container
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError
from .notebooks import read_notebook, resolve_notebook

RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED")
RunIf = Literal["ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED",
                "ALL_FAILED"]
# Jobs API fields about compute, notifications and the like: accepted in a Jobs API job definition
# (they matter on the remote side), not used by a local run.
JOBS_API_EXTRAS = {
    "job_id", "created_time", "creator_user_name", "run_as_user_name", "run_as", "settings", "format",
    "job_clusters", "email_notifications", "webhook_notifications", "notification_settings", "tags",
    "queue", "git_source", "environments", "health", "access_control_list", "budget_policy_id",
    "edit_mode", "deployment", "trigger", "continuous", "performance_target",
}
TASK_API_EXTRAS = {
    "existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key", "libraries",
    "email_notifications", "webhook_notifications", "notification_settings", "health", "compute",
}
REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TASK_KEY = r"^[\w\-]{1,100}$"
_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        problem = quartz_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone_id")
    @classmethod
    def _zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (a Java/IANA id such as 'Europe/Paris')") from None
        return value


class Cluster(_Strict):
    """The all-purpose cluster ``nbflow remote deploy`` creates for the plan (Clusters API fields);
    a local run ignores it. Options given to deploy win over these."""

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


class _Upstream:
    """Whether a task is upstream of one task, answered from bitsets (see :func:`_upstream_sets`)."""

    def __init__(self, bits: dict[str, int], reach: int) -> None:
        self._bits, self._reach = bits, reach

    def __contains__(self, key: object) -> bool:
        return bool(self._bits.get(key, 0) & self._reach) if isinstance(key, str) else False


def _upstream_sets(plan: Plan, wanted: set[str]) -> dict[str, _Upstream]:
    """For each task, which of the ``wanted`` tasks (those a ``{{tasks.<key>...}}`` reference
    names) are upstream of it.

    Ancestor sets are Python ints used as bitsets over ``wanted`` only, built in one pass in
    dependency order: each task ORs its dependencies' sets. That is one pass over tasks and
    edges, each step a machine-word operation per 64 referenced tasks; asking for the full
    upstream set of every task instead took the time of a chain's length cubed.
    """
    bits = {key: 1 << i for i, key in enumerate(sorted(wanted))}
    reach: dict[str, int] = {}
    for key in plan.order():
        acc = 0
        for dep in plan.task(key).depends_on:
            acc |= reach[dep] | bits.get(dep, 0)
        reach[key] = acc
    return {key: _Upstream(bits, acc) for key, acc in reach.items()}


# What a plan (or parameters file) may be: far past any real one, well short of hurting the machine.
MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_VALUES = 1_000_000  # values once YAML aliases are expanded (a billion-laughs file has 10**9)
MAX_DEPTH = 64  # a plan is about 6 deep; the JSON encoder and pydantic recurse on values
# libyaml is several times faster and bounds nesting itself (1000 levels) before anything recurses.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A YAML or JSON file's data, and the lines of its fields (worked out only if asked: only a
    plan with problems needs them)."""

    text: str
    data: Any
    node: yaml.Node | None = None
    _lines: dict[tuple[Any, ...], int] | None = None

    def lines(self) -> dict[tuple[Any, ...], int]:
        if self._lines is None:
            if self.node is None and self.text.strip():
                self.node = _YAML_LOADER(self.text).get_single_node()  # it parsed once: it parses again
            self._lines = _line_map(self.node)
        return self._lines


def read_document(path: Path, what: str, error: Callable[[str], InputError]) -> Document:
    """Read a YAML or JSON file that may be hostile.

    Refused, each with one line raised through ``error``: a missing or unreadable file, one over
    MAX_DOCUMENT_BYTES (read no further: ``/dev/zero`` ends too), one that is not UTF-8 text or
    holds NUL bytes, invalid YAML, aliases that refer to themselves or expand to more than
    MAX_VALUES values, and nesting deeper than MAX_DEPTH.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise error(f"{path}: larger than {MAX_DOCUMENT_BYTES // 2**20} MiB: not a {what} nbflow reads")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                    f"a {what} is YAML or JSON") from None
    if "\x00" in text:
        raise error(f"{path}: a binary file (it holds NUL bytes): a {what} is YAML or JSON text")
    if text.lstrip().startswith("{"):
        # JSON is YAML too, but the json module reads it fifty times faster, and has no aliases.
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            pass  # the YAML parser says where the problem is, or reads it as YAML flow style
        else:
            _check_depth(data, path, error)
            return Document(text, data)
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and "&" in text:  # no anchor, no alias: nothing to expand
            _check_shape(node, path, error)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise error(f"{where}: not valid YAML or JSON ({reason})") from None
    except RecursionError:  # only without libyaml, whose parser bounds nesting itself
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    document = Document(text, data, node)
    if "&" not in text:
        _check_depth(data, path, error, document)
    return document


def _check_depth(data: Any, path: Path, error: Callable[[str], InputError], document: Document | None = None) -> None:
    """Refuse data nested deeper than MAX_DEPTH (a tree: no aliases), naming the line if known."""
    deepest = _deepest(data)
    if deepest is not None:
        lines = (document or Document(path.read_text(encoding="utf-8"), None)).lines()
        raise error(f"{path}:{_line(lines, deepest)}: nested more than {MAX_DEPTH} levels deep")


def _deepest(data: Any) -> tuple[Any, ...] | None:
    """The path of a value nested past MAX_DEPTH, or None. Paths are built only once one is found."""
    if not isinstance(data, (dict, list)):
        return None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if level > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, level + 1) for v in children if isinstance(v, (dict, list)))
    else:
        return None
    loc: tuple[Any, ...] = ()
    while len(loc) < MAX_DEPTH:  # the walk again, down one too-deep branch only
        items = data.items() if isinstance(data, dict) else enumerate(data)
        key, data = next((k, v) for k, v in items if isinstance(v, (dict, list)) and _nested(v, MAX_DEPTH - len(loc)))
        loc = (*loc, key)
    return loc


def _nested(value: Any, levels: int) -> bool:
    """Whether ``value`` holds containers at least ``levels`` deep (itself counting as one)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level >= levels:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, level + 1) for v in children if isinstance(v, (dict, list)))
    return False


def _check_shape(root: yaml.Node, path: Path, error: Callable[[str], InputError]) -> None:
    """Refuse recursive aliases, expansion past MAX_VALUES and nesting past MAX_DEPTH.

    One walk without recursion over the node graph, each node once (an alias is the node it
    names, shared): its expanded size and depth come from its children's, memoised.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path from the root: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1
            if size[key] > MAX_VALUES:
                raise error(f"{path}:{line}: more than {MAX_VALUES:,} values once its aliases are expanded "
                            "(a YAML alias bomb?): refused")
            if depth[key] > MAX_DEPTH:
                raise error(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in open_nodes:
                raise error(f"{path}:{kid.start_mark.line + 1}: a YAML alias refers to itself "
                            "(a recursive structure): refused")
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class PlanError(InputError):
    """A plan that cannot run; ``problems`` holds every ``FILE:LINE: path: message`` found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        return self.problems[0] + more


# -- loading ---------------------------------------------------------------------------------
def load_plan(path: str | Path) -> tuple[Plan, dict[str, Path]]:
    """Read and validate a plan; return it with each task's notebook file.

    Raises PlanError listing every problem, each naming the file, line and field path.
    """
    path = Path(path)
    document = read_document(path, "plan", lambda message: PlanError([message]))
    data = document.data
    if not isinstance(data, dict):
        raise PlanError([f"{path}:1: a plan is a mapping with 'name' and 'tasks'"])
    data, renamed = from_jobs_api(data, path.parent)
    if isinstance(data.get("parameters"), dict):
        # The short form {name: default}: errors name the key (and its line), not a list index.
        names = list(data["parameters"])
        data = {**data, "parameters": [{"name": k, "default": v} for k, v in data["parameters"].items()]}
        renamed.update({("parameters", i, "name"): ("parameters", k) for i, k in enumerate(names)})
        renamed.update({("parameters", i, "default"): ("parameters", k) for i, k in enumerate(names)})
    problems: list[str] = []

    prefix = renamed.pop("prefix", ())  # type: ignore[call-overload]

    def report(loc: tuple[Any, ...], message: str) -> None:
        # Renamed fields of a Jobs API definition, e.g. parameters[...] -> notebook_task.base_parameters
        original = _original(renamed, loc)
        line = _line(document.lines(), (*prefix, *original))
        problems.append(f"{path}:{line}: {_dotted(original) or '(plan)'}: {message}")

    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        seen: set[tuple[Any, ...]] = set()
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc and loc[-1] in _UNION_MEMBERS:  # one message for a value of none of the allowed types
                loc = loc[:-1]
                if loc in seen:
                    continue
                error = {**error, "type": "union", "msg": "must be a string, a number, a boolean or null"}
            seen.add(loc)
            report(loc, _message(error))
        raise PlanError(problems) from None
    notebooks = _check(plan, path.parent, report)
    if problems:
        raise PlanError(problems)
    return plan, notebooks


def check_plan(plan: Plan, base_dir: Path) -> dict[str, Path]:
    """The checks of :func:`load_plan` that need the whole plan, for a plan built in code (keys,
    dependencies, cycles, notebooks relative to ``base_dir``, references); each task's notebook
    file. Raises PlanError listing every problem by its field path."""
    problems: list[str] = []

    def report(loc: tuple[Any, ...], message: str) -> None:
        problems.append(f"plan {plan.name!r}: {_dotted(loc) or '(plan)'}: {message}")

    notebooks = _check(plan, base_dir, report)
    if problems:
        raise PlanError(problems)
    return notebooks


def plan_from_job(settings: dict[str, Any], locate: Callable[[str], Path], where: str) -> tuple[Plan, dict[str, Path]]:
    """A Jobs API job (its ``settings``, or a ``runs/submit`` body) as a plan, with each task's
    notebook file found by ``locate`` (a workspace path to a local file; raises InputError).

    Raises PlanError listing every problem by its field path, prefixed by ``where``.
    """
    data, renamed = from_jobs_api(settings, None)
    renamed.pop("prefix", ())  # type: ignore[call-overload]
    # A workspace accepts fields newer than nbflow knows (the SDK sends them): keep only what runs.
    data = {k: v for k, v in data.items() if k in Plan.model_fields}
    data["tasks"] = [{k: v for k, v in t.items() if k in Task.model_fields} if isinstance(t, dict) else t
                     for t in data.get("tasks") or []]
    problems: list[str] = []

    def report(loc: tuple[Any, ...], message: str) -> None:
        original = _original(renamed, loc)
        problems.append(f"{where}: {_dotted(original) or '(job)'}: {message}")

    for i, task in enumerate(settings.get("tasks") or []):
        if isinstance(task, dict) and "notebook_task" not in task:
            kinds = sorted(k for k in task if k.endswith("_task")) or ["none"]
            report(("tasks", i), f"only notebook_task runs here (this task has: {', '.join(kinds)})")
    if problems:
        raise PlanError(problems)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            report(tuple(error["loc"]), _message(error))
        raise PlanError(problems) from None
    notebooks = _check(plan, Path("."), report, locate)
    if problems:
        raise PlanError(problems)
    return plan, notebooks


def _check(plan: Plan, base: Path, report: Any, locate: Callable[[str], Path] | None = None) -> dict[str, Path]:
    """The checks that need the whole plan: keys, dependencies, cycles, notebooks, references."""
    keys: dict[str, int] = {}
    for i, task in enumerate(plan.tasks):
        if task.task_key in keys:
            first = keys[task.task_key]
            report(("tasks", i, "task_key"), f"duplicate task_key {task.task_key!r} (also tasks[{first}])")
        keys.setdefault(task.task_key, i)
    graph_ok = True
    for i, task in enumerate(plan.tasks):
        for j, dep in enumerate(task.depends_on):
            if dep not in keys:
                report(("tasks", i, "depends_on", j), f"unknown task {dep!r}")
                graph_ok = False
            elif dep == task.task_key:
                report(("tasks", i, "depends_on", j), "a task cannot depend on itself")
                graph_ok = False
    graph_ok = graph_ok and len(keys) == len(plan.tasks)
    if graph_ok:
        cycle = _cycle(plan)
        if cycle:
            report(("tasks", keys[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
            graph_ok = False
    notebooks: dict[str, Path] = {}
    unreadable: dict[Path, str] = {}  # each file read once, however many tasks name it
    located: dict[str, Path | InputError] = {}  # many tasks often run the same notebook
    for i, task in enumerate(plan.tasks):
        if task.notebook not in located:
            try:
                located[task.notebook] = locate(task.notebook) if locate else resolve_notebook(task.notebook, base)
            except InputError as exc:
                located[task.notebook] = exc
        found = located[task.notebook]
        if isinstance(found, InputError):
            report(("tasks", i, "notebook"), str(found))
            continue
        notebooks[task.task_key] = found
        if locate is None:
            # A path may lead anywhere (../notebooks/x.py next to a plans/ folder is usual), but only
            # to a notebook nbflow can read: /etc/passwd is not one, nor a broken .ipynb.
            if found not in unreadable:
                try:
                    read_notebook(found)
                    unreadable[found] = ""
                except InputError as exc:
                    unreadable[found] = str(exc)
            if unreadable[found]:
                report(("tasks", i, "notebook"), unreadable[found])
    job_params = {p.name for p in plan.parameters}
    task_keys = set(keys)
    referenced = {match.group(1).split(".")[1] for task in plan.tasks for value in task.parameters.values()
                  if isinstance(value, str) for match in REFERENCE.finditer(value)
                  if match.group(1).startswith("tasks.") and match.group(1).count(".") >= 2}
    upstream = _upstream_sets(plan, referenced & task_keys) if graph_ok else {}
    for i, task in enumerate(plan.tasks):
        for name, value in task.parameters.items():
            for problem in reference_problems(value, job_params, task_keys, upstream.get(task.task_key)):
                report(("tasks", i, "parameters", name), problem)
    return notebooks


def _cycle(plan: Plan) -> list[str]:
    """A dependency cycle (``a, b, a``: a depends on b, which depends on a), or [] if none."""
    try:
        plan.order()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))
    return []


def reference_problems(value: Any, job_params: Container[str], tasks: Container[str],
                       upstream: Container[str] | None) -> list[str]:
    """What is wrong with the ``{{...}}`` references in a parameter value (Databricks' rules).

    A malformed reference (a missing brace) is a literal, as on Databricks; an unknown name in a
    known namespace (``job``, ``tasks``, ``workspace``) is an error; other names are left as text.
    """
    if not isinstance(value, str):
        return []
    problems = []
    for match in REFERENCE.finditer(value):
        ref = match.group(1)
        problem = _reference_problem(ref.split("."), job_params, tasks, upstream)
        if problem:
            problems.append(f"{{{{{ref}}}}}: {problem}")
    return problems


def _reference_problem(parts: list[str], job_params: Container[str], tasks: Container[str],
                       upstream: Container[str] | None) -> str:
    head = parts[0]
    if head == "job":
        if parts[1:] in (["id"], ["name"], ["run_id"], ["repair_count"]):
            return ""
        if len(parts) == 3 and parts[1] == "start_time" and parts[2] in START_TIME_FIELDS:
            return ""
        if len(parts) == 3 and parts[1] == "parameters":
            return "" if parts[2] in job_params else f"no job parameter named {parts[2]!r}"
        return "unknown job reference"
    if head == "tasks":
        well_formed = (len(parts) == 4 and parts[2] == "values") or (len(parts) == 3 and parts[2] == "exit_value")
        if not well_formed:
            return "expected {{tasks.<key>.values.<name>}} or {{tasks.<key>.exit_value}}"
        if parts[1] not in tasks:
            return f"no task named {parts[1]!r}"
        if upstream is not None and parts[1] not in upstream:
            return f"task {parts[1]!r} is not upstream of this task (add it to depends_on)"
        return ""
    if head == "workspace" and parts[1:] not in (["id"], ["url"]):
        return "unknown workspace reference"
    return ""


START_TIME_FIELDS = ("iso_date", "iso_datetime", "year", "month", "day", "hour", "minute", "second",
                     "timestamp_ms", "is_weekday")


def from_jobs_api(
    data: dict[str, Any], base: Path | None
) -> tuple[dict[str, Any], dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Turn a Jobs API job definition into a plan; a plan comes back unchanged.

    Recognised by ``notebook_task`` in its tasks (also inside ``settings``, as ``jobs/get``
    returns). ``notebook_task.notebook_path`` becomes ``notebook`` by this rule: the path as
    given, relative to the plan's folder; else with its leading folders dropped one by one
    (``/Workspace/Users/me/project/etl/load`` finds ``etl/load`` or ``load`` next to the plan).
    ``base_parameters`` becomes ``parameters``; compute and notification fields are ignored.
    With no ``base``, notebook paths are kept as they are (a workspace resolves them).
    Returns the plan data and, for error messages, the original field paths of renamed fields.
    """
    prefix: tuple[Any, ...] = ()
    if isinstance(data.get("settings"), dict) and "tasks" not in data:
        data, prefix = data["settings"], ("settings",)
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not any(isinstance(t, dict) and "notebook_task" in t for t in tasks):
        return data, {}
    renamed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    plan = {k: v for k, v in data.items() if k not in JOBS_API_EXTRAS}
    if isinstance(plan.get("parameters"), list):
        plan["parameters"] = [{"name": p.get("name"), "default": p.get("default", "")} if isinstance(p, dict) else p
                              for p in plan["parameters"]]
    plan["tasks"] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            plan["tasks"].append(task)
            continue
        converted = {k: v for k, v in task.items() if k not in TASK_API_EXTRAS and k != "notebook_task"}
        nb_task = task.get("notebook_task")
        if isinstance(nb_task, dict):
            path = str(nb_task.get("notebook_path", ""))
            converted["notebook"] = path if base is None else _local_notebook(path, base)
            renamed[("tasks", i, "notebook")] = ("tasks", i, "notebook_task", "notebook_path")
            if "base_parameters" in nb_task:
                converted["parameters"] = nb_task["base_parameters"]
                renamed[("tasks", i, "parameters")] = ("tasks", i, "notebook_task", "base_parameters")
        plan["tasks"].append(converted)
    return plan, {"prefix": prefix, **renamed}  # type: ignore[dict-item]


def _local_notebook(workspace_path: str, base: Path) -> str:
    parts = [p for p in workspace_path.split("/") if p]
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        try:
            resolve_notebook(candidate, base)
            return candidate
        except InputError:
            continue
    return workspace_path  # reported as missing, under its own name


# -- quartz cron -------------------------------------------------------------------------------
_CRON_FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23), ("day-of-month", 1, 31),
                ("month", 1, 12), ("day-of-week", 1, 7), ("year", 1970, 2199))
_NAMES = {"month": ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
          "day-of-week": ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]}


def quartz_problem(expression: str) -> str | None:
    """Why a Quartz cron expression is invalid, or None. Quartz: seconds first, 6 or 7 fields,
    ``?`` in exactly one of day-of-month and day-of-week."""
    fields = expression.split()
    if len(fields) not in (6, 7):
        return (f"a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month "
                f"day-of-week [year]), got {len(fields)}: {expression!r}")
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=False):
        if not _cron_field_ok(text, name, low, high):
            return f"bad {name} field {text!r} in {expression!r}"
    if (fields[3] == "?") == (fields[5] == "?"):
        return f"exactly one of day-of-month and day-of-week must be '?' in {expression!r}"
    return None


def _cron_field_ok(text: str, name: str, low: int, high: int) -> bool:
    if text == "?":
        return name in ("day-of-month", "day-of-week")
    names = _NAMES.get(name, [])
    for part in text.split(","):
        part = part.upper()
        if name == "day-of-month" and re.fullmatch(r"L(-\d{1,2})?|LW|\d{1,2}W", part):
            continue
        if name == "day-of-week" and re.fullmatch(r"[1-7]L|[1-7]#[1-5]|L", part):
            continue
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2:
            return False
        for bound in bounds:
            value = names.index(bound) + 1 if bound in names else None
            if value is None:
                if not bound.isdigit():
                    return False
                value = int(bound)
            if not low <= value <= high:
                return False
    return True


# -- messages with lines -----------------------------------------------------------------------
def _line_map(root: Any) -> dict[tuple[Any, ...], int]:
    """Field path → 1-based line, from the YAML node tree (JSON is YAML too).

    A node an alias shares is walked once: a message about a value inside it points at the
    alias, which is where that copy of the value is used.
    """
    lines: dict[tuple[Any, ...], int] = {}
    if root is None:
        return lines
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                lines[child] = key.start_mark.line + 1  # the key's line, not its value's
                stack.append((value, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return lines


def _original(renamed: dict[tuple[Any, ...], tuple[Any, ...]], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A field path as the file spelled it (a Jobs API definition's fields are renamed on load)."""
    for end in range(1, len(loc) + 1):  # renamed paths do not nest: the shortest match is the one
        if loc[:end] in renamed:
            return (*renamed[loc[:end]], *loc[end:])
    return loc


def _line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):  # the field, else the nearest enclosing one
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error" and error["loc"][-1] == "run_if":
        return f"{error['input']!r} is not a run_if value ({', '.join(RUN_IF)})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
