"""The scheduler's semantics against the in-process FakeExecutor: no kernel, no process, each
test in milliseconds. run_if, retries and their intervals, timeouts, fail-fast, cancellation,
repair, --only, the order of a sequential run, the concurrency cap, events, the job's result.
(tests/test_scheduler.py runs the same rules end to end, through worker processes.)"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow import scheduler as scheduler_mod
from nbflow.fake_executor import FakeExecutor, Script
from nbflow.params import Param
from nbflow.plan import Plan, Task
from nbflow.runs import Attempt, CellError, NotebookResult, PlanRun, TaskRun
from nbflow.scheduler import Scheduler

BOUND_S = 10.0  # "stops within ... rather than hanging": far above the milliseconds these take


def task(key: str, *depends_on: str, **fields: Any) -> Task:
    # Timeouts are whole seconds in the model; model_copy takes the milliseconds these tests use.
    timeout = fields.pop("timeout_seconds", 0)
    made = Task(task_key=key, notebook=f"{key}.py", depends_on=list(depends_on), **fields)
    return made.model_copy(update={"timeout_seconds": timeout}) if timeout else made


def plan(*tasks: Task, timeout_seconds: float = 0, **fields: Any) -> Plan:
    made = Plan(name="units", tasks=list(tasks), **fields)
    return made.model_copy(update={"timeout_seconds": timeout_seconds}) if timeout_seconds else made


@pytest.fixture
def fake() -> Iterator[FakeExecutor]:
    with FakeExecutor() as executor:
        yield executor


def scheduler(the_plan: Plan, executor: FakeExecutor, out: Path, **options: Any) -> Scheduler:
    notebooks = {t.task_key: out / "nb" / f"{t.task_key}.py" for t in the_plan.tasks}
    return Scheduler(the_plan, notebooks, out / "run", "run-1", executor=executor, **options)


def execute(the_plan: Plan, executor: FakeExecutor, out: Path, **options: Any) -> PlanRun:
    started = time.monotonic()
    run = scheduler(the_plan, executor, out, **options).execute()
    assert time.monotonic() - started < BOUND_S
    return run


def states(run: PlanRun) -> dict[str, str]:
    return {k: t.status for k, t in run.tasks.items()}


def submitted(executor: FakeExecutor) -> list[str]:
    return [r.task_key or r.notebook for r in executor.requests]


# -- run_if --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("run_if", "runs", "otherwise"), [
    ("ALL_SUCCESS", False, "UPSTREAM_FAILED"),
    ("AT_LEAST_ONE_SUCCESS", True, ""),
    ("NONE_FAILED", False, "UPSTREAM_FAILED"),
    ("ALL_DONE", True, ""),
    ("AT_LEAST_ONE_FAILED", True, ""),
    ("ALL_FAILED", False, "EXCLUDED"),
])
def test_run_if_after_one_success_and_one_failure(run_if: str, runs: bool, otherwise: str, tmp_path: Path) -> None:
    with FakeExecutor({"bad": Script("FAILED")}) as fake:
        run = execute(plan(task("ok"), task("bad"), task("then", "ok", "bad", run_if=run_if)), fake, tmp_path)
    assert states(run)["then"] == ("SUCCESS" if runs else otherwise)
    assert ("then" in submitted(fake)) is runs
    if not runs:
        assert run.tasks["then"].reason == f"run_if {run_if} not met" and not run.tasks["then"].attempts


@pytest.mark.parametrize(("run_if", "expected"), [
    ("ALL_SUCCESS", "SUCCESS"), ("NONE_FAILED", "SUCCESS"), ("AT_LEAST_ONE_SUCCESS", "SUCCESS"),
    ("ALL_DONE", "SUCCESS"), ("AT_LEAST_ONE_FAILED", "EXCLUDED"), ("ALL_FAILED", "EXCLUDED"),
])
def test_run_if_after_successes_only(run_if: str, expected: str, fake: FakeExecutor, tmp_path: Path) -> None:
    run = execute(plan(task("a"), task("b"), task("then", "a", "b", run_if=run_if)), fake, tmp_path)
    assert states(run)["then"] == expected


def test_all_failed_runs_when_every_dependency_failed_or_timed_out(tmp_path: Path) -> None:
    with FakeExecutor({"a": Script("FAILED"), "b": Script("TIMEDOUT")}) as fake:
        run = execute(plan(task("a"), task("b"), task("cleanup", "a", "b", run_if="ALL_FAILED")), fake, tmp_path)
    assert states(run) == {"a": "FAILED", "b": "TIMEDOUT", "cleanup": "SUCCESS"}


def test_exclusion_spreads_down_a_chain_and_counts_as_success(fake: FakeExecutor, tmp_path: Path) -> None:
    the_plan = plan(
        task("off", disabled=True),
        task("after_off", "off"),  # every dependency excluded: excluded, whatever its run_if
        task("after_that", "after_off", run_if="ALL_DONE"),
        task("ok"),
        task("mixed", "after_off", "ok"),  # excluded counts as succeeded
        task("handler", "ok", run_if="AT_LEAST_ONE_FAILED"),  # nothing failed: excluded
        task("after_handler", "handler"),
    )
    run = execute(the_plan, fake, tmp_path)
    assert states(run) == {"off": "EXCLUDED", "after_off": "EXCLUDED", "after_that": "EXCLUDED", "ok": "SUCCESS",
                           "mixed": "SUCCESS", "handler": "EXCLUDED", "after_handler": "EXCLUDED"}
    assert run.tasks["off"].reason == "disabled"
    assert sorted(submitted(fake)) == ["mixed", "ok"]
    assert run.result_state == "SUCCESS"  # "Excluded tasks are skipped and treated as successful."


def test_failure_and_cancellation_spread_down_chains(tmp_path: Path) -> None:
    script = {"bad": Script("FAILED"), "stopped": Script("CANCELED")}
    the_plan = plan(
        task("bad"), task("b", "bad"), task("c", "b"), task("none_failed", "b", run_if="NONE_FAILED"),
        task("stopped"), task("after_stopped", "stopped"), task("done_anyway", "stopped", run_if="ALL_DONE"),
    )
    with FakeExecutor(script) as fake:
        run = execute(the_plan, fake, tmp_path)
    assert states(run) == {"bad": "FAILED", "b": "UPSTREAM_FAILED", "c": "UPSTREAM_FAILED",
                           "none_failed": "UPSTREAM_FAILED", "stopped": "CANCELED",
                           "after_stopped": "UPSTREAM_CANCELED", "done_anyway": "SUCCESS"}


# -- retries -------------------------------------------------------------------------------------
def test_retries_wait_their_interval_from_the_failed_attempts_start(tmp_path: Path) -> None:
    script = {"flaky": [Script("FAILED", seconds=0.02), Script("FAILED"), Script(exit_value="third")]}
    events: list[tuple[str, str]] = []
    with FakeExecutor(script) as fake:
        run = execute(plan(task("flaky", max_retries=2, min_retry_interval_millis=150)), fake, tmp_path,
                      on_event=lambda event, t: events.append((event, t.task.task_key)))
    flaky = run.tasks["flaky"]
    assert flaky.status == "SUCCESS" and [a.status for a in flaky.attempts] == ["FAILED", "FAILED", "SUCCESS"]
    assert [a.number for a in flaky.attempts] == [0, 1, 2]
    assert flaky.last is not None and flaky.last.result is not None and flaky.last.result.exit_value == "third"
    for before, after in itertools.pairwise(fake.attempts_of("flaky")):
        assert after - before >= 0.15 - 0.005  # the clocks differ by rounding to milliseconds
    assert events == [("started", "flaky"), ("retry", "flaky")] * 2 + [("started", "flaky"), ("finished", "flaky")]
    # Each attempt writes its own notebook: the first keeps the task's name.
    outputs = [Path(r.output_path or "").name for r in fake.requests]
    assert outputs == ["flaky.ipynb", "flaky.attempt-1.ipynb", "flaky.attempt-2.ipynb"]


def test_retries_run_out_and_minus_one_retries_for_ever(tmp_path: Path) -> None:
    script = {"doomed": Script("FAILED"), "stubborn": [Script("FAILED")] * 5 + [Script()]}
    with FakeExecutor(script) as fake:
        run = execute(plan(task("doomed", max_retries=2), task("stubborn", max_retries=-1)), fake, tmp_path)
    assert [a.status for a in run.tasks["doomed"].attempts] == ["FAILED"] * 3
    assert run.tasks["doomed"].status == "FAILED"
    assert len(run.tasks["stubborn"].attempts) == 6 and run.tasks["stubborn"].status == "SUCCESS"


def test_a_timeout_is_retried_only_with_retry_on_timeout(tmp_path: Path) -> None:
    script = {"again": [Script(hang=True), Script()], "once": [Script(hang=True), Script()]}
    the_plan = plan(task("again", timeout_seconds=0.05, max_retries=1, retry_on_timeout=True),
                    task("once", timeout_seconds=0.05, max_retries=1))
    with FakeExecutor(script) as fake:
        run = execute(the_plan, fake, tmp_path, mode="parallel", max_workers=2)
    assert [a.status for a in run.tasks["again"].attempts] == ["TIMEDOUT", "SUCCESS"]
    assert [a.status for a in run.tasks["once"].attempts] == ["TIMEDOUT"]
    assert states(run) == {"again": "SUCCESS", "once": "TIMEDOUT"}
    assert run.result_state == "TIMEDOUT"  # a leaf timed out, none failed


# -- timeouts ------------------------------------------------------------------------------------
def test_a_task_timeout_times_the_task_out_and_fails_its_dependents(tmp_path: Path) -> None:
    with FakeExecutor({"slow": Script(seconds=5)}) as fake:
        run = execute(plan(task("slow", timeout_seconds=0.05), task("next", "slow")), fake, tmp_path)
    assert states(run) == {"slow": "TIMEDOUT", "next": "UPSTREAM_FAILED"}
    assert fake.requests[0].timeout == 0.05  # the executor is told, and enforces it
    attempt = run.tasks["slow"].last
    assert attempt is not None and attempt.error is not None and attempt.error.ename == "TimeoutError"


def test_the_job_timeout_stops_running_attempts_and_cancels_the_rest(tmp_path: Path) -> None:
    with FakeExecutor({"nap": Script(hang=True)}) as fake:
        run = execute(plan(task("nap"), task("later", "nap"), timeout_seconds=0.1), fake, tmp_path)
    assert states(run) == {"nap": "TIMEDOUT", "later": "CANCELED"}
    assert run.result_state == "TIMEDOUT"
    assert run.tasks["later"].reason == "the job's timeout expired"
    assert 0 < fake.requests[0].timeout <= 0.1  # an attempt gets no more than the job has left
    assert run.resume_from == ["nap", "later"]


def test_the_job_timeout_withdraws_an_attempt_waiting_for_a_worker(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # "nap" holds the only worker past the deadline (its own timeout does not stop it).
    monkeypatch.setattr(scheduler_mod, "STOP_GRACE_S", 0.05)
    with FakeExecutor({"nap": Script(hang=True, ignores_interrupt=True)}, workers=1) as fake:
        run = execute(plan(task("nap"), task("queued"), timeout_seconds=0.1), fake, tmp_path,
                      mode="parallel", max_workers=2)
    assert [key for key, _ in fake.starts] == ["nap"] and submitted(fake) == ["nap", "queued"]
    queued = run.tasks["queued"].last
    assert queued is not None and queued.status == "CANCELED"
    assert states(run) == {"nap": "TIMEDOUT", "queued": "TIMEDOUT"} and run.result_state == "TIMEDOUT"


def test_the_job_timeout_ends_the_run_at_once_when_no_worker_became_free(tmp_path: Path) -> None:
    # No worker ever frees up (kernels slow to warm on a busy machine): the waiting attempt is
    # withdrawn at the deadline, and the run ends then, not after the interrupt's grace.
    with FakeExecutor(workers=0) as fake:
        started = time.monotonic()
        run = execute(plan(task("nap"), task("later", "nap"), timeout_seconds=0.1), fake, tmp_path)
    assert time.monotonic() - started < scheduler_mod.STOP_GRACE_S / 2
    assert states(run) == {"nap": "TIMEDOUT", "later": "CANCELED"} and fake.starts == []


def test_the_job_timeout_cuts_a_retry_wait_short(tmp_path: Path) -> None:
    with FakeExecutor({"flaky": Script("FAILED")}) as fake:
        run = execute(plan(task("flaky", max_retries=3, min_retry_interval_millis=60_000), timeout_seconds=0.1),
                      fake, tmp_path)
    assert len(run.tasks["flaky"].attempts) == 1
    assert states(run) == {"flaky": "TIMEDOUT"} and run.result_state == "TIMEDOUT"


def test_an_attempt_that_ignores_the_interrupt_is_killed_after_the_grace(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_mod, "STOP_GRACE_S", 0.1)
    with FakeExecutor({"stubborn": Script(hang=True, ignores_interrupt=True)}) as fake:
        run = execute(plan(task("stubborn"), timeout_seconds=0.05), fake, tmp_path)
    assert fake.interrupted == ["stubborn"] and fake.killed == ["stubborn"]
    attempt = run.tasks["stubborn"].last
    assert attempt is not None and attempt.error is not None and attempt.error.ename == "WorkerError"
    assert states(run) == {"stubborn": "TIMEDOUT"}  # stopped by the job's timeout, not by its own fault


# -- fail-fast -----------------------------------------------------------------------------------
def test_fail_fast_starts_nothing_new_and_lets_running_tasks_finish(tmp_path: Path) -> None:
    # One worker: "queued" waits for it behind "slow" when "bad" fails (a reference to a job
    # parameter that does not exist fails it before it reaches the executor).
    script = {"slow": Script(seconds=0.2, exit_value="kept")}
    the_plan = plan(task("slow"), task("queued"), task("bad", parameters={"x": "{{job.parameters.nope}}"}),
                    task("after_slow", "slow"))
    with FakeExecutor(script, workers=1) as fake:
        run = execute(the_plan, fake, tmp_path, mode="parallel", max_workers=3, fail_fast=True)
    assert states(run) == {"slow": "SUCCESS", "queued": "CANCELED", "bad": "FAILED", "after_slow": "CANCELED"}
    assert run.tasks["bad"].last is not None and run.tasks["bad"].last.error is not None
    assert run.tasks["bad"].last.error.ename == "ParameterError"
    assert [key for key, _ in fake.starts] == ["slow"] and fake.interrupted == []
    assert run.result_state == "FAILED"
    assert run.tasks["after_slow"].reason == "--fail-fast: task bad ended FAILED"


def test_fail_fast_does_not_turn_a_cancelled_run_into_a_failed_one(tmp_path: Path) -> None:
    with FakeExecutor({"a": Script(hang=True), "b": Script(hang=True)}) as fake:
        sched = scheduler(plan(task("a"), task("b")), fake, tmp_path, mode="parallel", max_workers=2,
                          fail_fast=True)
        thread = cancel_when_started(sched, fake, 2)
        run = execute_bounded(sched)
        thread.join()
    assert states(run) == {"a": "CANCELED", "b": "CANCELED"} and run.result_state == "CANCELED"


def test_without_fail_fast_the_rest_runs(tmp_path: Path) -> None:
    with FakeExecutor({"bad": Script("FAILED")}) as fake:
        run = execute(plan(task("bad"), task("other"), task("after", "other")), fake, tmp_path)
    assert states(run) == {"bad": "FAILED", "other": "SUCCESS", "after": "SUCCESS"}
    assert run.result_state == "FAILED"


# -- cancellation --------------------------------------------------------------------------------
def cancel_when_started(sched: Scheduler, fake: FakeExecutor, count: int) -> threading.Thread:
    """Cancel the run from another thread once ``count`` attempts have started."""
    def cancel() -> None:
        deadline = time.monotonic() + BOUND_S
        while len(fake.starts) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        sched.cancel("the run was cancelled (runs/cancel)")

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def test_cancel_from_another_thread_interrupts_running_tasks_and_cancels_the_rest(tmp_path: Path) -> None:
    with FakeExecutor({"a": Script(hang=True), "b": Script(hang=True)}) as fake:
        sched = scheduler(plan(task("done_first"), task("a"), task("b"), task("after", "a")), fake, tmp_path,
                          mode="parallel", max_workers=2)
        thread = cancel_when_started(sched, fake, 3)
        started = time.monotonic()
        run = sched.execute()
        thread.join()
    assert time.monotonic() - started < BOUND_S
    assert states(run) == {"done_first": "SUCCESS", "a": "CANCELED", "b": "CANCELED", "after": "CANCELED"}
    assert sorted(fake.interrupted) == ["a", "b"]
    assert run.result_state == "CANCELED"
    assert run.tasks["after"].reason == run.tasks["a"].reason == "the run was cancelled (runs/cancel)"


def test_a_cancel_after_every_task_ended_leaves_the_result_to_the_tasks(tmp_path: Path) -> None:
    # As a workspace does: runs/cancel on a run whose tasks all ended changes nothing.
    sched: Scheduler

    def on_event(event: str, task_run: TaskRun) -> None:
        if event == "finished" and task_run.task.task_key == "last":
            sched.cancel("runs/cancel")

    with FakeExecutor({"first": Script("FAILED")}) as fake:
        sched = scheduler(plan(task("first"), task("last", "first", run_if="ALL_DONE")), fake, tmp_path,
                          on_event=on_event)
        run = sched.execute()
    assert states(run) == {"first": "FAILED", "last": "SUCCESS"}
    assert run.result_state == "SUCCESS_WITH_FAILURES"  # the leaf succeeded: not CANCELED


def test_a_cancel_kills_what_ignores_it_after_the_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_mod, "STOP_GRACE_S", 0.05)
    with FakeExecutor({"stuck": Script(hang=True, ignores_interrupt=True)}) as fake:
        sched = scheduler(plan(task("stuck")), fake, tmp_path)
        thread = cancel_when_started(sched, fake, 1)
        run = execute_bounded(sched)
        thread.join()
    assert fake.interrupted == fake.killed == ["stuck"]
    assert states(run) == {"stuck": "CANCELED"} and run.result_state == "CANCELED"


def test_cancel_during_a_retry_wait_ends_the_run_at_once(tmp_path: Path) -> None:
    with FakeExecutor({"flaky": Script("FAILED")}) as fake:
        sched = scheduler(plan(task("flaky", max_retries=1, min_retry_interval_millis=60_000)), fake, tmp_path)
        thread = cancel_when_started(sched, fake, 1)
        run = execute_bounded(sched)
        thread.join()
    assert states(run) == {"flaky": "CANCELED"} and len(run.tasks["flaky"].attempts) == 1


def execute_bounded(sched: Scheduler) -> PlanRun:
    started = time.monotonic()
    run = sched.execute()
    assert time.monotonic() - started < BOUND_S
    return run


def test_ctrl_c_in_the_loop_stops_the_attempts_and_is_raised(tmp_path: Path) -> None:
    def on_event(event: str, t: TaskRun) -> None:
        if (event, t.task.task_key) == ("started", "second"):
            raise KeyboardInterrupt  # as Ctrl-C arrives in the thread that runs the loop

    with FakeExecutor({"first": Script(hang=True)}) as fake:
        sched = scheduler(plan(task("first"), task("second"), task("third", "first")), fake, tmp_path,
                          mode="parallel", max_workers=2, on_event=on_event)
        with pytest.raises(KeyboardInterrupt):
            sched.execute()
    run = sched.run
    assert states(run) == {"first": "CANCELED", "second": "CANCELED", "third": "CANCELED"}
    assert fake.interrupted == ["first"] and run.result_state == "CANCELED"
    assert run.tasks["third"].reason.startswith("the run was cancelled (")
    assert run.end_ms >= run.start_ms > 0


# -- repair and selection ------------------------------------------------------------------------
def test_repair_keeps_the_prior_tasks_and_their_values(tmp_path: Path) -> None:
    producer = task("producer", parameters={})
    kept = TaskRun(producer, 7, status="SUCCESS", attempts=[Attempt(
        0, "SUCCESS", 1, 2, "old/producer.ipynb",
        NotebookResult("producer.py", "old/producer.ipynb", "SUCCESS", exit_value="set", task_values={"rows": 40}))])
    the_plan = plan(producer, task("consumer", "producer", parameters={
        "rows": "{{tasks.producer.values.rows}}", "said": "{{tasks.producer.exit_value}}"}), task("other"))
    with FakeExecutor() as fake:
        run = execute(the_plan, fake, tmp_path, prior={"producer": kept}, only={"consumer"})
    assert submitted(fake) == ["consumer"]  # the kept task is not run again; "other" was not asked for
    assert run.tasks["producer"] is kept and set(run.tasks) == {"producer", "consumer"}
    request = fake.requests[0]
    assert request.parameters["rows"] == Param("40", "task parameter")
    assert request.parameters["said"] == Param("set", "task parameter")
    assert request.context.job_task_values == {"producer": {"rows": 40}}
    assert run.result_state == "SUCCESS"


def test_only_runs_the_selection_without_its_dependencies(fake: FakeExecutor, tmp_path: Path) -> None:
    the_plan = plan(task("a"), task("b", "a"), task("c", "b"), task("d"))
    run = execute(the_plan, fake, tmp_path, only={"a", "c"})
    assert set(run.tasks) == {"a", "c"} and submitted(fake) == ["a", "c"]
    assert states(run) == {"a": "SUCCESS", "c": "SUCCESS"}


def test_job_parameters_win_over_task_parameters_and_upstream_values_flow(tmp_path: Path) -> None:
    script = {"producer": Script(task_values={"rows": 40}, exit_value="made")}
    the_plan = plan(task("producer"), task("consumer", "producer", parameters={
        "env": "task", "ref": "{{tasks.producer.values.rows}}/{{job.parameters.env}}/{{job.run_id}}"}),
        parameters=[{"name": "env", "default": "dev"}])
    with FakeExecutor(script) as fake:
        run = execute(the_plan, fake, tmp_path, job_parameters={"env": "prod"})
    consumer = fake.requests[1]
    assert consumer.parameters["env"] == Param("prod", "job parameter")
    assert consumer.parameters["ref"] == Param("40/prod/run-1", "task parameter")
    assert consumer.context.job_task_values == {"producer": {"rows": 40}}
    assert run.job_parameters == {"env": "prod"}


def test_a_reference_to_a_task_left_out_fails_the_task(fake: FakeExecutor, tmp_path: Path) -> None:
    the_plan = plan(task("producer"), task("consumer", "producer",
                                           parameters={"x": "{{tasks.producer.values.rows}}"}))
    run = execute(the_plan, fake, tmp_path, only={"consumer"})
    error = run.tasks["consumer"].last.error if run.tasks["consumer"].last else None
    assert states(run) == {"consumer": "FAILED"} and error is not None and "producer" in error.evalue
    assert submitted(fake) == []  # failed before it reached the executor


# -- order, concurrency, events, result ----------------------------------------------------------
def test_a_sequential_run_follows_the_plans_order(fake: FakeExecutor, tmp_path: Path) -> None:
    the_plan = plan(task("setup"), task("late", "mid"), task("mid", "setup"), task("solo"), task("z"),
                    task("join", "late", "solo"))
    run = execute(the_plan, fake, tmp_path)
    assert submitted(fake) == the_plan.order() == ["setup", "solo", "z", "mid", "late", "join"]
    assert fake.max_running == 1 and run.result_state == "SUCCESS"


def test_the_ready_task_first_in_plan_order_takes_a_free_slot_first(tmp_path: Path) -> None:
    # "b2" becomes ready while "b1" (earlier in the plan) waits for the same slot: b1 goes first.
    script = {"a": Script(seconds=0.05)}
    with FakeExecutor(script) as fake:
        execute(plan(task("a"), task("x"), task("b1", "a"), task("b2", "x")), fake, tmp_path)
    assert submitted(fake) == ["a", "x", "b1", "b2"]


def test_at_most_max_workers_attempts_run_at_once(tmp_path: Path) -> None:
    script = {f"t{i}": Script(seconds=0.03) for i in range(8)}
    with FakeExecutor(script) as fake:
        run = execute(plan(*(task(f"t{i}") for i in range(8))), fake, tmp_path, mode="parallel", max_workers=3)
    assert fake.max_running == 3 and run.result_state == "SUCCESS"


def test_a_retry_waiting_its_interval_holds_its_slot(tmp_path: Path) -> None:
    script = {"flaky": [Script("FAILED"), Script()]}
    with FakeExecutor(script) as fake:
        execute(plan(task("flaky", max_retries=1, min_retry_interval_millis=50), task("other")), fake, tmp_path)
    assert submitted(fake) == ["flaky", "flaky", "other"]  # sequential: the retry comes before the next task


def test_events_say_what_happened_in_order(tmp_path: Path) -> None:
    events: list[tuple[str, str, str]] = []
    script = {"flaky": [Script("FAILED"), Script()], "bad": Script("FAILED")}
    the_plan = plan(task("flaky", max_retries=1), task("bad"), task("after_bad", "bad"))
    with FakeExecutor(script) as fake:
        execute(the_plan, fake, tmp_path,
                on_event=lambda event, t: events.append((event, t.task.task_key, t.status)))
    assert events == [
        ("started", "flaky", "RUNNING"), ("retry", "flaky", "RUNNING"), ("started", "flaky", "RUNNING"),
        ("finished", "flaky", "SUCCESS"), ("started", "bad", "RUNNING"), ("finished", "bad", "FAILED"),
        ("skipped", "after_bad", "UPSTREAM_FAILED"),
    ]


def test_a_failing_event_callback_does_not_stop_the_run(fake: FakeExecutor, tmp_path: Path) -> None:
    def closed_console(event: str, t: TaskRun) -> None:
        raise BrokenPipeError("| head went away")

    run = execute(plan(task("a"), task("b", "a")), fake, tmp_path, on_event=closed_console)
    assert run.result_state == "SUCCESS"


@pytest.mark.parametrize(("script", "expected"), [
    ({}, "SUCCESS"),
    ({"mid": Script("FAILED")}, "SUCCESS_WITH_FAILURES"),  # the leaf ran ALL_DONE and succeeded
    ({"leaf": Script("FAILED")}, "FAILED"),
    ({"leaf": Script("TIMEDOUT")}, "TIMEDOUT"),
    ({"leaf": Script("CANCELED")}, "CANCELED"),
    ({"leaf": Script("TIMEDOUT"), "other_leaf": Script("FAILED")}, "FAILED"),
])
def test_the_jobs_result_comes_from_its_leaves(script: dict[str, Script], expected: str, tmp_path: Path) -> None:
    the_plan = plan(task("mid"), task("leaf", "mid", run_if="ALL_DONE"), task("other_leaf"))
    with FakeExecutor(script) as fake:
        run = execute(the_plan, fake, tmp_path)
    assert run.result_state == expected
    assert run.resume_from == [k for k in ("mid", "other_leaf", "leaf") if k in script]


def test_an_executor_defect_fails_the_task_not_the_run(tmp_path: Path) -> None:
    with FakeExecutor({"broken": Script(raises=RuntimeError("the executor broke"))}) as fake:
        run = execute(plan(task("broken"), task("fine")), fake, tmp_path)
    attempt = run.tasks["broken"].last
    assert attempt is not None and attempt.error == CellError(None, "RuntimeError", "the executor broke")
    assert states(run) == {"broken": "FAILED", "fine": "SUCCESS"}


def test_a_shared_executor_outlives_the_run(fake: FakeExecutor, tmp_path: Path) -> None:
    first = execute(plan(task("a")), fake, tmp_path / "1")
    notebooks = {"b": tmp_path / "b.py"}
    second = Scheduler(plan(task("b")), notebooks, tmp_path / "2", "run-2", executor=fake).execute()
    assert first.result_state == second.result_state == "SUCCESS" and submitted(fake) == ["a", "b"]
    assert second.cleanup_ms >= 0 and second.end_ms >= second.start_ms


def test_the_attempts_times_come_from_the_executor(tmp_path: Path) -> None:
    with FakeExecutor({"a": Script(seconds=0.05)}) as fake:
        run = execute(plan(task("a")), fake, tmp_path)
    attempt = run.tasks["a"].last
    assert attempt is not None and attempt.end_ms - attempt.start_ms >= 45 and attempt.setup_ms >= 0
    assert run.start_ms <= attempt.start_ms <= attempt.end_ms <= run.end_ms
