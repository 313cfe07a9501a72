"""Quartz cron schedules of the local workspace's jobs, fired while ``nbflow serve`` runs.

Quartz expressions (``sec min hour day-of-month month day-of-week [year]``, ``?``, ``L``, ``#``)
are evaluated with croniter; Quartz numbers the days of the week 1 (Sunday) to 7, cron 0 to 6,
so numeric days are shifted. As on Databricks, a job is not started twice within 10 seconds.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import zoneinfo
from collections.abc import Callable
from typing import Any

from croniter import croniter

MIN_INTERVAL = dt.timedelta(seconds=10)


def to_cron(quartz: str) -> tuple[str, str]:
    """A Quartz expression as croniter's six fields (seconds first), and its year field."""
    fields = quartz.split()
    if len(fields) not in (6, 7):
        raise ValueError(f"a Quartz expression has 6 or 7 fields, not {len(fields)}: {quartz!r}")
    year = fields[6] if len(fields) == 7 else "*"
    fields[5] = ",".join(_shift_day(part) for part in fields[5].split(","))
    return " ".join(fields[:6]), year


def _shift_day(part: str) -> str:
    """Quartz's day-of-week numbers 1-7 to cron's 0-6, in ``a``, ``a-b``, ``a/n``, ``a#n``, ``aL``."""
    found = re.search(r"[/#]", part)
    head, tail = (part[:found.start()], part[found.start():]) if found else (part, "")
    # The step of a/n and the occurrence of a#n are counts, not days: only the head shifts.
    return re.sub(r"\d+", lambda m: str(int(m.group()) - 1), head) + tail


def year_matches(field: str, year: int) -> bool:
    if field in ("*", "?"):
        return True
    for part in field.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (int(low) <= year <= int(high or low)):
            return True
    return False


class ScheduleRunner:
    """Fires the jobs whose schedule is UNPAUSED: ``jobs()`` lists (job_id, schedule), ``fire`` runs one."""

    def __init__(self, jobs: Callable[[], list[tuple[int, dict[str, Any]]]], fire: Callable[[int], None]) -> None:
        self._jobs, self._fire = jobs, fire
        self._next: dict[int, tuple[tuple[str, str], dt.datetime]] = {}
        self._last: dict[int, dt.datetime] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbflow-schedules", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.tick(dt.datetime.now(dt.timezone.utc))

    def tick(self, now: dt.datetime) -> None:
        live = set()
        for job_id, schedule in self._jobs():
            if schedule.get("pause_status", "UNPAUSED") == "PAUSED":
                continue
            live.add(job_id)
            key = (schedule["quartz_cron_expression"], schedule.get("timezone_id") or "UTC")
            known = self._next.get(job_id)
            if known is None or known[0] != key:  # new or changed: the next time from now
                self._next[job_id] = (key, _next_time(key, now))
                continue
            if now < known[1]:
                continue
            last = self._last.get(job_id)
            if last is None or now - last >= MIN_INTERVAL:
                self._last[job_id] = now
                self._fire(job_id)
            self._next[job_id] = (key, _next_time(key, max(now, known[1])))
        for gone in set(self._next) - live:
            del self._next[gone]


def _next_time(key: tuple[str, str], after: dt.datetime) -> dt.datetime:
    expression, zone = key
    cron, year = to_cron(expression)
    local = after.astimezone(zoneinfo.ZoneInfo(zone))
    it = croniter(cron, local, second_at_beginning=True)
    for _ in range(1000):
        fire: dt.datetime = it.get_next(dt.datetime)
        if year_matches(year, fire.year):
            return fire.astimezone(dt.timezone.utc)
    return dt.datetime.max.replace(tzinfo=dt.timezone.utc)  # no year left: never
