"""Quartz cron expressions, as Databricks job schedules write them: checked and evaluated here.

Quartz has seconds first, 6 or 7 fields (``sec min hour day-of-month month day-of-week
[year]``), ``?`` in exactly one of the two day fields, ``L``, ``W`` and ``#``, and numbers the
days of the week 1 (Sunday) to 7. A plan's ``schedule`` is checked with :func:`problem` and
:func:`zone_problem`; ``nbflow serve`` fires schedules at :func:`next_fire`. One module for both,
so that every expression a plan or job may hold is one the local workspace can fire.

Evaluation is croniter's (cron numbers the days of the week 0 to 6, so numeric days shift); the
two day-of-month forms croniter lacks, ``L-n`` and ``LW``, are worked out here month by month.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import zoneinfo

FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23), ("day-of-month", 1, 31),
          ("month", 1, 12), ("day-of-week", 1, 7), ("year", 1970, 2199))
_NAMES = {"month": ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
          "day-of-week": ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]}
_LAST_DAY = re.compile(r"L(?:-(\d{1,2}))?|LW|\d{1,2}W")  # day-of-month: last, n before last, weekdays
_DOW_SPECIAL = re.compile(r"[1-7]L|[1-7]#[1-5]|L")  # day-of-week: last Friday, third Friday, Saturday
CRONITER_LAST_YEAR = 2099  # croniter's years end here, Quartz's at 2199
_SEARCH_YEARS = 200  # a year field may name a year far ahead; no expression skips more


def problem(expression: str) -> str | None:
    """Why a Quartz cron expression is invalid, or None."""
    fields = expression.split()
    if len(fields) not in (6, 7):
        return (f"a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month "
                f"day-of-week [year]), got {len(fields)}: {expression!r}")
    for text, (name, low, high) in zip(fields, FIELDS, strict=False):
        if not _field_ok(text, name, low, high):
            return f"bad {name} field {text!r} in {expression!r}"
    if (fields[3] == "?") == (fields[5] == "?"):
        return f"exactly one of day-of-month and day-of-week must be '?' in {expression!r}"
    return None


def zone_problem(zone_id: str) -> str | None:
    """Why a schedule's ``timezone_id`` is unknown, or None."""
    try:
        zoneinfo.ZoneInfo(zone_id)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {zone_id!r} (a Java/IANA id such as 'Europe/Paris')"
    return None


def _field_ok(text: str, name: str, low: int, high: int) -> bool:
    if text == "?":
        return name in ("day-of-month", "day-of-week")
    names = _NAMES.get(name, [])
    parts = text.upper().split(",")
    for part in parts:
        special = ((name == "day-of-month" and _LAST_DAY.fullmatch(part))
                   or (name == "day-of-week" and _DOW_SPECIAL.fullmatch(part)))
        if special:
            # Quartz refuses L, W and # in a list ("not implemented"), and so would a workspace.
            if len(parts) > 1:
                return False
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


# -- evaluation ----------------------------------------------------------------------------------
def next_fire(expression: str, zone_id: str, after: dt.datetime) -> dt.datetime | None:
    """The first time strictly after ``after`` (an aware datetime) that a valid expression fires,
    read as wall time in ``zone_id``; in UTC. None if it never fires again (a year long past,
    31 February)."""
    fields = expression.upper().split()
    local = after.astimezone(zoneinfo.ZoneInfo(zone_id))
    year = _croniter_years(fields[6]) if len(fields) == 7 else "*"
    if year is None:
        return None
    dow = "?" if fields[5] == "?" else _cron_day_of_week(fields[5])
    head = fields[:3]
    if fields[3] == "LW" or fields[3].startswith("L-"):  # croniter has L and nW, not these
        found = _next_by_month(head, fields[3], fields[4], year, local)
    else:
        found = _first(" ".join([*head, fields[3], fields[4], dow, year]), local)
    return found.astimezone(dt.timezone.utc) if found else None


def _first(cron: str, after: dt.datetime) -> dt.datetime | None:
    # croniter and dateutil cost 40 ms, and every plan's model imports this module to check
    # schedules; only nbflow serve evaluates them.
    from croniter import croniter  # lazy: see above
    from croniter.croniter import CroniterBadDateError  # lazy: as croniter

    try:
        fire: dt.datetime = croniter(cron, after, second_at_beginning=True,
                                     max_years_between_matches=_SEARCH_YEARS).get_next(dt.datetime)
    except CroniterBadDateError:  # no date matches in the years croniter searches
        return None
    return fire


def _next_by_month(head: list[str], day: str, months: str, year: str, after: dt.datetime) -> dt.datetime | None:
    """``L-n`` (n days before the month's last) and ``LW`` (its last weekday): the day is worked
    out for each month in turn and handed to croniter, which finds the time within it."""
    start = after.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(12 * _SEARCH_YEARS):
        last = calendar.monthrange(start.year, start.month)[1]
        if day == "LW":
            number = last - max(0, calendar.weekday(start.year, start.month, last) - 4)  # Sat -1, Sun -2
        else:
            number = last - int(day[2:])
        if number >= 1:
            cron = " ".join([*head, str(number), months, "?", year])
            found = _first(cron, max(after, start - dt.timedelta(seconds=1)))
            if found is None:
                return None
            if (found.year, found.month) == (start.year, start.month):
                return found
        start = (start + dt.timedelta(days=32)).replace(day=1)
    return None


def _cron_day_of_week(field: str) -> str:
    """Quartz's days of the week as croniter's: 1-7 become 0-6, ``6L`` (last Friday) ``L5``,
    ``L`` alone (the last day of the week) Saturday."""
    if field == "L":
        return "6"
    if re.fullmatch(r"[1-7]L", field):
        return f"L{int(field[0]) - 1}"
    return ",".join(_shift_day(part) for part in field.split(","))


def _shift_day(part: str) -> str:
    """1-7 to 0-6 in ``a``, ``a-b``, ``a/n``, ``a#n``; names stay (croniter knows them)."""
    found = re.search(r"[/#]", part)
    head, tail = (part[:found.start()], part[found.start():]) if found else (part, "")
    # The step of a/n and the occurrence of a#n are counts, not days: only the head shifts.
    return re.sub(r"\d+", lambda m: str(int(m.group()) - 1), head) + tail


def _croniter_years(field: str) -> str | None:
    """The year field within croniter's years (to 2099); None if nothing is left of it."""
    if field in ("*", "?"):
        return "*"
    kept = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        low, _, high = base.partition("-")
        if base == "*":
            kept.append(part)
        elif int(low) <= CRONITER_LAST_YEAR:
            top = min(int(high or (CRONITER_LAST_YEAR if slash else low)), CRONITER_LAST_YEAR)
            kept.append(f"{low}-{top}{slash}{step}" if (high or slash) else low)
    return ",".join(kept) or None
