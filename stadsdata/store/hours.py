"""Hourly summaries of each Datastream's Observations (``observation_hours``), kept exact with every write.

Per Datastream and UTC hour of the phenomenonTime's start: the number of Observations, of those over an
interval, of numeric results, and those results' sum, minimum and maximum. ``$apply`` reads whole hours from
here (``Compiler.hourly``): a year of hourly means is 8,760 summaries instead of every Observation of the year.

The store notes the changes where it writes Observations (``SqlSession``), as for the counts (``counts.py``):
new Observations add to their hours, added up in Python per batch; an Observation deleted, moved or changed
marks its old and new hours, and a FeatureOfInterest's deletion (which removes Observations by ``ON DELETE
CASCADE``) the range of hours of each Datastream it touches. Marked hours are computed again from the
Observations once the batch's units have run, and the additions to them are then left out (the new rows are
among those counted). All of it is deferred work of the units (``HOURS``), undone with a unit or change set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ClauseElement,
    Float,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import cast as cast_

from stadsdata.store import codec

if TYPE_CHECKING:
    from stadsdata.store.base import Tx
    from stadsdata.store.sql import SqlSession

HOURS = "observation-hours"
"""The deferred-work key of hourly summary changes: each item an ``Added`` dict or a ``Marked`` tuple."""

HOUR = 3_600_000_000

Summary = list[Any]
"""[count, intervals, numbers, sum, min, max] of some Observations of one hour (sum, min, max None without numbers)."""
Added = dict[tuple[int, int], Summary]
"""New Observations by (Datastream id, hour)."""
Marked = tuple[int, int, int]
"""(Datastream id, first hour, last hour) to compute again from the Observations."""

_NUMERIC = (codec.INT, codec.FLOAT)


def hour_of(micros: int) -> int:
    return micros - micros % HOUR


def added(
    rows: Iterable[Sequence[Any]], ds_at: int, start_at: int, end_at: int | None, type_at: int | None, number_at: int
) -> Added:
    """The summaries of new Observations per (Datastream, hour), from encoded rows (columns at the given places;
    ``end_at`` or ``type_at`` None: the column is NULL in every row)."""
    # The numeric results per hour first (a list each), then their count, sum, minimum and maximum with the
    # builtins: about twice as fast as keeping the summary row by row.
    counts: dict[tuple[int, int], int] = {}
    intervals: dict[tuple[int, int], int] = {}
    numbers: dict[tuple[int, int], list[float]] = {}
    for r in rows:
        ds = r[ds_at]
        if ds is None:
            continue
        start = r[start_at]
        key = (ds, start - start % HOUR)
        counts[key] = counts.get(key, 0) + 1
        if end_at is not None and r[end_at] is not None:
            intervals[key] = intervals.get(key, 0) + 1
        if type_at is not None and r[type_at] in _NUMERIC:
            found = numbers.get(key)
            if found is None:
                numbers[key] = [r[number_at]]
            else:
                found.append(r[number_at])
    out: Added = {}
    for key, n in counts.items():
        values = numbers.get(key)
        if values:
            out[key] = [n, intervals.get(key, 0), len(values), sum(values), min(values), max(values)]
        else:
            out[key] = [n, intervals.get(key, 0), 0, None, None, None]
    return out


def marked(ds: int | None, start: int | None) -> list[Marked]:
    return [] if ds is None or start is None else [(ds, hour_of(start), hour_of(start))]


def apply_hours(session: Tx, items: list[Added | Marked]) -> None:
    """Bring the summaries of a batch's hours up to date: marked ones from the Observations, others by addition."""
    tx = cast("SqlSession", session)
    ranges: dict[int, tuple[int, int]] = {}
    totals: Added = {}
    for item in items:
        if isinstance(item, tuple):
            ds, lo, hi = item
            known = ranges.get(ds)
            ranges[ds] = (lo, hi) if known is None else (min(known[0], lo), max(known[1], hi))
            continue
        for key, s in item.items():
            t = totals.get(key)
            if t is None:
                totals[key] = list(s)
                continue
            t[0] += s[0]
            t[1] += s[1]
            if s[2]:
                if t[2]:
                    t[3] += s[3]
                    t[4] = min(t[4], s[4])
                    t[5] = max(t[5], s[5])
                else:
                    t[3], t[4], t[5] = s[3], s[4], s[5]
                t[2] += s[2]
    for ds, (lo, hi) in ranges.items():
        _recompute(tx, ds, lo, hi)
    additions = []
    for (ds, hour), s in totals.items():
        span = ranges.get(ds)
        if span is not None and span[0] <= hour <= span[1]:
            continue  # computed from the Observations, these among them
        additions.append({"ds": ds, "hour": hour, "n": s[0], "intervals": s[1], "numbers": s[2], "total": s[3],
                          "low": s[4], "high": s[5]})  # fmt: skip
    _add(tx, additions)


_ADDED = (
    ("ds", BigInteger),
    ("hour", BigInteger),
    ("n", BigInteger),
    ("intervals", BigInteger),
    ("numbers", BigInteger),
    ("total", Float),
    ("low", Float),
    ("high", Float),
)
"""The values of an addition to an hour's summary, in the order of the table's columns."""


def _add(tx: SqlSession, additions: list[dict[str, Any]]) -> None:
    """Add summaries of new Observations to their hours, in one statement for all of them (over arrays, or sent
    once per hour where statements cost no round trip): an hour's row is inserted, or added to when it exists. A
    batch of a city's sensors touches thousands of hours."""
    if not additions:
        return
    hours = tx.metadata.tables["observation_hours"]
    streams = tx.metadata.tables["datastreams"]

    def upsert(arrays: bool) -> ClauseElement:
        if arrays:
            unnest = func.unnest(*(cast_(bindparam(name, type_=ARRAY(t)), ARRAY(t)) for name, t in _ADDED))
            given = unnest.table_valued(*(name for name, _ in _ADDED)).render_derived().alias("added")
            values = [given.c[name] for name, _ in _ADDED[1:]]
            # Only for a Datastream that still exists (it may have been deleted later in the batch).
            rows = select(streams.c.id, *values).join_from(given, streams, streams.c.id == given.c.ds)
        else:
            rows = select(streams.c.id, *(_typed(name, t) for name, t in _ADDED[1:])).where(
                streams.c.id == bindparam("ds")
            )
        names = ["datastream_id", "hour", "count", "intervals", "numbers", "sum", "min", "max"]
        stmt = tx.dialect.conflict_insert(hours).from_select(names, rows)
        c, new = hours.c, stmt.excluded
        upserted: ClauseElement = stmt.on_conflict_do_update(
            index_elements=[c.datastream_id, c.hour],
            set_={
                "count": c["count"] + new["count"],
                "intervals": c.intervals + new.intervals,
                "numbers": c.numbers + new.numbers,
                # Without numeric results a summary's sum, min and max are NULL, on either side.
                "sum": case((new.sum.is_(None), c.sum), (c.sum.is_(None), new.sum), else_=c.sum + new.sum),
                "min": case((c.min.is_(None), new.min), (new.min < c.min, new.min), else_=c.min),
                "max": case((c.max.is_(None), new.max), (new.max > c.max, new.max), else_=c.max),
            },
        )
        return upserted

    if tx.dialect.array_rows:
        tx.send(("hours_add", True), lambda: upsert(True), **{name: [a[name] for a in additions] for name, _ in _ADDED})
    else:
        tx.run_many(("hours_add", False), lambda: upsert(False), additions)


def _typed(name: str, type_: Any) -> Any:
    """A parameter typed in the SQL: in a SELECT list (of INSERT … SELECT) PostgreSQL would not know a NULL's type."""
    return cast_(bindparam(name, type_=type_), type_)


def _recompute(tx: SqlSession, ds: int, lo: int, hi: int) -> None:
    """The summaries of Datastream ``ds``'s hours ``lo`` to ``hi`` (inclusive) from its Observations."""
    hours = tx.metadata.tables["observation_hours"]
    obs = tx.metadata.tables["observations"]

    def drop() -> ClauseElement:
        c = hours.c
        return delete(hours).where(
            c.datastream_id == bindparam("ds"), c.hour >= bindparam("lo"), c.hour <= bindparam("hi")
        )

    def fill() -> ClauseElement:
        start = obs.c.phenomenon_time_start
        hour = hour_expression(start).label("hour")
        # Not an IN list, which is rendered with the values when the statement is compiled.
        numeric = or_(obs.c.result_type == codec.INT, obs.c.result_type == codec.FLOAT)
        number = case((numeric, obs.c.result_number), else_=None)
        rows = (
            select(
                obs.c.datastream_id,
                hour,
                func.count(),
                func.count(obs.c.phenomenon_time_end),
                func.count(number),
                func.sum(number),
                func.min(number),
                func.max(number),
            )
            .where(
                obs.c.datastream_id == bindparam("ds"),
                and_(start >= bindparam("lo"), start < bindparam("end")),
            )
            .group_by(obs.c.datastream_id, hour)
        )
        names = ["datastream_id", "hour", "count", "intervals", "numbers", "sum", "min", "max"]
        return insert(hours).from_select(names, rows)

    tx.run(("hours_drop",), drop, ds=ds, lo=lo, hi=hi)
    tx.run(("hours_fill",), fill, ds=ds, lo=lo, end=hi + HOUR)


def hour_expression(micros: Any) -> Any:
    """SQL for ``hour_of``: the start of the UTC hour, the floor also before 1970 (SQL's % truncates)."""
    step = literal(HOUR)
    return micros - (micros % step + step) % step
