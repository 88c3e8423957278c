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


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("sd_time_bucket", 4, bucket, deterministic=True)
