"""Quartz cron schedules of the local workspace's jobs, fired while ``nbflow serve`` runs.

Quartz expressions are evaluated by :mod:`nbflow.quartz`, the module that checks them in plans
and jobs. As on Databricks, a job is not started twice within 10 seconds.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from .. import quartz

MIN_INTERVAL = dt.timedelta(seconds=10)
NEVER = dt.datetime.max.replace(tzinfo=dt.timezone.utc)  # a schedule with no time left


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
    if quartz.problem(expression) or quartz.zone_problem(zone):
        return NEVER  # the jobs API stores settings unchecked: one bad schedule must not stop the others
    return quartz.next_fire(expression, zone, after) or NEVER
