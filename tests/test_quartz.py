"""Quartz cron expressions: what plans accept, and when the local workspace fires them (one module)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from nbflow import quartz
from nbflow.serve.schedules import NEVER, ScheduleRunner

UTC = dt.timezone.utc
AFTER = dt.datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("expression", "ok"),
    [("0 15 22 * * ?", True), ("0 0/5 * ? * MON-FRI", True), ("0 0 12 L * ?", True), ("0 0 12 ? * 6#3", True),
     ("0 0 12 * * ? 2030", True), ("0 0 12 * * *", False), ("0 0 25 * * ?", False), ("* * * *", False),
     ("0 0 12 ? JAN-DEC SUN", True), ("0 0 12 ? FOO *", False)],
)
def test_quartz_cron(expression: str, ok: bool) -> None:
    assert (quartz.problem(expression) is None) == ok


@pytest.mark.parametrize(("expression", "field"), [
    ("0 0 12 L,15 * ?", "day-of-month field 'L,15'"), ("0 0 12 LW,1 * ?", "day-of-month field 'LW,1'"),
    ("0 0 12 ? * 6L,2", "day-of-week field '6L,2'"), ("0 0 12 ? * 6#3,2", "day-of-week field '6#3,2'")])
def test_l_w_and_hash_are_refused_in_lists_as_quartz_refuses_them(expression: str, field: str) -> None:
    assert quartz.problem(expression) == f"bad {field} in {expression!r}"


def test_time_zones() -> None:
    assert quartz.zone_problem("Europe/Paris") is None
    assert quartz.zone_problem("Mars/Olympus") == (
        "unknown time zone 'Mars/Olympus' (a Java/IANA id such as 'Europe/Paris')")


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("0 15 22 ? * 2-6", "2026-11-22T06:00:00+00:00", "2026-11-23T21:15:00+00:00"),  # Mon-Fri, Paris time
    ("0 0 12 ? * 6#3", "2026-11-22T06:00:00+00:00", "2026-12-18T11:00:00+00:00"),  # third Friday
    ("0 0 9 1 * ? 2028", "2026-11-22T06:00:00+00:00", "2028-01-01T08:00:00+00:00"),  # a year field
    ("0 0 3 * * ?", "2026-03-28T12:00:00+00:00", "2026-03-29T01:00:00+00:00"),  # summer time starts that night
])
def test_fire_times_are_wall_times_in_the_zone(expression: str, after: str, expected: str) -> None:
    fire = quartz.next_fire(expression, "Europe/Paris", dt.datetime.fromisoformat(after))
    assert fire == dt.datetime.fromisoformat(expected)


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 0 12 L * ?", "2026-11-30"),  # the last day of the month
    ("0 0 12 L-3 * ?", "2026-11-27"),  # three days before it
    ("0 0 12 LW * ?", "2026-11-30"),  # its last weekday (a Monday)
    ("0 0 12 LW 1 ? 2027", "2027-01-29"),  # 31 January 2027 is a Sunday: Friday the 29th
    ("0 0 12 L-3 2 ? 2028", "2028-02-26"),  # a leap year's February
    ("0 0 12 15W * ?", "2026-12-15"),  # the weekday nearest the 15th
    ("0 0 12 ? * 6L", "2026-11-27"),  # the last Friday
    ("0 0 12 ? * L", "2026-11-28"),  # L alone in day-of-week: Saturday, the week's last day
    ("0 0 12 ? * 7", "2026-11-28"),  # Quartz numbers Sunday 1, Saturday 7
    ("0 0 12 ? * 2/2", "2026-11-23"),  # Mon, Wed, Fri: the step counts days, it does not shift
    ("0 0 12 ? * SUN", "2026-11-22"),
    ("0 0 12 * * ? 2030", "2030-01-01"),  # a year more than 1000 fires away
    ("0 0 12 * * ? 2028/2", "2028-01-01"),
    ("0 0 12 * * ? 2090-2150", "2090-01-01"),  # Quartz's years go to 2199, croniter's to 2099
])
def test_special_days(expression: str, expected: str) -> None:
    assert quartz.problem(expression) is None
    fire = quartz.next_fire(expression, "UTC", AFTER)
    assert fire is not None and fire.isoformat() == f"{expected}T12:00:00+00:00"


@pytest.mark.parametrize("expression", ["0 0 12 31 2 ?", "0 0 12 * * ? 2020", "0 0 12 * * ? 2150",
                                        "0 0 12 LW 2 ? 2021", "0 0 12 L-30 2 ?"])
def test_expressions_with_no_time_left_never_fire(expression: str) -> None:
    assert quartz.problem(expression) is None
    assert quartz.next_fire(expression, "UTC", AFTER) is None


def test_fire_times_follow_each_other() -> None:
    times = [AFTER]
    for _ in range(3):
        fire = quartz.next_fire("*/20 * * ? * *", "UTC", times[-1])
        assert fire is not None
        times.append(fire)
    assert [t.second for t in times[1:]] == [20, 40, 0]  # strictly after: the same second never twice


def test_a_bad_schedule_does_not_stop_the_others() -> None:
    # The Jobs API stores settings as sent; a bad expression must not kill the thread that fires them all.
    schedules: list[tuple[int, dict[str, Any]]] = [
        (1, {"quartz_cron_expression": "not cron"}), (2, {"quartz_cron_expression": "0 0 12 * * ?",
                                                          "timezone_id": "Mars/Olympus"}),
        (3, {"quartz_cron_expression": "* * * ? * *"})]
    fired: list[int] = []
    runner = ScheduleRunner(lambda: schedules, fired.append)
    runner.tick(AFTER)  # learns the next times
    runner.tick(AFTER + dt.timedelta(seconds=2))
    assert fired == [3]
    assert runner._next[1][1] == NEVER and runner._next[2][1] == NEVER
