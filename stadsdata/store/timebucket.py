"""Time buckets for ``$apply=groupby((bucket(...) as t), ...)``, computed the same on every store.

A bucket value is the start of the bucket, in microseconds since 1970 UTC.

* Calendar buckets (``P1D``, ``P1W``, ``P1M``, ``P1Y``) start at local midnight of the day,
  of the Monday, of the first of the month or of the first of January in the time zone, so a
  day in Europe/Amsterdam lasts 23 or 25 hours at the daylight saving switches.
* Fixed buckets (``PT15M``, ``PT1H``; the length divides a day) are counted from local midnight
  of the day: 00:00, 01:00, … local time. On a day of 23 or 25 hours the last bucket of the day
  is shorter or longer when the step is longer than the shift (PT6H); hourly and shorter
  buckets stay whole in zones whose offsets are whole hours.

A local midnight that does not exist (a switch at midnight) is read with the offset before the
switch, as PostgreSQL does. SQLite calls ``bucket`` (registered as ``sd_time_bucket``);
PostgreSQL computes the same with ``date_trunc(unit, timestamptz, zone)`` (see ``postgres.py``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from functools import lru_cache
from zoneinfo import ZoneInfo

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65_536)
def _local_start(zone: str, year: int, month: int, day: int) -> int:
    """Microseconds of local midnight starting ``year-month-day`` in ``zone``."""
    return (dt.datetime(year, month, day, tzinfo=_zone(zone)) - _EPOCH) // _US


def _span(micros: int, unit: str, zone: str) -> tuple[int, int]:
    """[start, end) in microseconds of the local day (or week, month, year for ``unit``) holding ``micros``."""
    local = (_EPOCH + dt.timedelta(microseconds=micros)).astimezone(_zone(zone))
    day = local.date()
    if unit == "week":
        day -= dt.timedelta(days=day.weekday())
        following = day + dt.timedelta(days=min(7, (dt.date.max - day).days))
    elif unit == "month":
        day = day.replace(day=1)
        following = (day + dt.timedelta(days=min(31, (dt.date.max - day).days))).replace(day=1)
    elif unit == "year":
        day = day.replace(month=1, day=1)
        following = dt.date(min(day.year + 1, dt.MAXYEAR), 1, 1)
    else:
        following = day + dt.timedelta(days=1) if day < dt.date.max else day
    start = _local_start(zone, day.year, day.month, day.day)
    try:
        return start, _local_start(zone, following.year, following.month, following.day)
    except (OverflowError, ValueError):  # the last span before the year 10000: not kept
        return start, start


def local_day(micros: int, zone: str) -> tuple[int, int]:
    """[start, end) in microseconds of the local day in ``zone`` that holds ``micros``."""
    return _span(micros, "day", zone)


_last: dict[tuple[str, str], tuple[int, int]] = {}
"""The span of the previous call per (unit, zone): rows of a series come in time order, so most
calls fall in the same local day as the one before and need no time zone arithmetic."""


def bucket(micros: int | None, step: int, unit: str, zone: str) -> int | None:
    """The start of the bucket holding ``micros``: ``step`` microseconds from local midnight, or a calendar ``unit``."""
    if micros is None:
        return None
    key = (unit, zone)
    span = _last.get(key)
    if span is None or not span[0] <= micros < span[1]:
        try:
            span = _span(micros, unit, zone)
        except (OverflowError, ValueError):  # beyond the years 1 to 9999 in local time
            return None
        _last[key] = span  # one assignment: another thread sees the old span or this one
    start = span[0]
    if unit:
        return start
    return start + (micros - start) // step * step


_ALIGNED_FROM = dt.date(1970, 1, 1)
_ALIGNED_TO = dt.date(2100, 1, 1)


@lru_cache(maxsize=256)
def aligned_span(zone: str, step: int) -> tuple[int, int] | None:
    """[start, end) in microseconds within which the fixed buckets of ``step`` in ``zone`` are whole multiples of
    ``step`` since 1970 UTC, so that the bucket of ``t`` is ``t - t % step`` (no time zone arithmetic per row).

    That holds on each day whose local midnight is such a multiple: for hourly and shorter buckets in every zone
    whose offset is a whole number of hours (Europe/Amsterdam since 1940), for any step that divides a day in UTC.
    The span is the first run of such days between 1970 and 2100 that does not end before today; None if there is
    none. Offsets are read a week apart, and day by day only around a change (no zone changes twice in a week).
    """
    if step <= 0:
        return None
    tz = _zone(zone)

    def midnight(day: dt.date) -> int:
        return (dt.datetime(day.year, day.month, day.day, tzinfo=tz) - _EPOCH) // _US

    def aligned(day: dt.date) -> bool:
        return midnight(day) % step == 0

    today = dt.datetime.now(dt.UTC).date()
    week, one = dt.timedelta(days=7), dt.timedelta(days=1)
    day, start = _ALIGNED_FROM, None
    while day < _ALIGNED_TO:
        nxt = min(day + week, _ALIGNED_TO)
        offset = tz.utcoffset(dt.datetime(day.year, day.month, day.day))
        same = offset == tz.utcoffset(dt.datetime(nxt.year, nxt.month, nxt.day))
        for d in [day] if same else [day + one * i for i in range((nxt - day).days)]:
            if aligned(d):
                if start is None:
                    start = midnight(d)
            elif start is not None:
                if d > today:
                    return (max(start, 0), midnight(d)) if max(start, 0) < midnight(d) else None
                start = None
        day = nxt
    if start is None:
        return None
    end = midnight(_ALIGNED_TO)
    start = max(start, 0)  # t % step is the remainder of a non-negative t on every database
    return (start, end) if start < end else None


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("sd_time_bucket", 4, bucket, deterministic=True)
