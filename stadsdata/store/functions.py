"""The ``$filter`` functions of SensorThings 1.1, compiled to SQL.

String, date/time, math, geospatial and temporal functions. What differs
between SQL dialects (date parts, geometry predicates) comes from the
dialect; the argument checking and the standard's semantics are here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_

from stadsdata.errors import QuerySyntaxError
from stadsdata.model.values import MAX_MICROS, MIN_MICROS, now_micros
from stadsdata.query.ast import Call
from stadsdata.store import codec

DAY_US = 86_400_000_000
GEO_PREDICATES = {
    "geo.intersects": "intersects",
    "st_intersects": "intersects",
    "st_equals": "equals",
    "st_disjoint": "disjoint",
    "st_touches": "touches",
    "st_within": "within",
    "st_overlaps": "overlaps",
    "st_crosses": "crosses",
    "st_contains": "contains",
}
# Predicates that can only hold when the bounding boxes overlap: prefiltered on the bbox columns.
_BBOX_PREFILTER = {"intersects", "equals", "touches", "within", "overlaps", "crosses", "contains"}
TIME_PARTS = ("year", "month", "day", "hour", "minute", "second")
TEMPORAL = ("before", "after", "meets", "during", "overlaps", "starts", "finishes")


@dataclass(frozen=True)
class Value:
    """A compiled operand and what it holds.

    ``kind``: number, string, bool, time, interval, json, any, null, geometry.
    ``sql`` is the column or expression; for ``interval`` ``end`` is the end
    column; for ``any`` ``cols`` are the (type, number, string, json) columns.
    """

    kind: str
    sql: ColumnElement[Any]
    end: ColumnElement[Any] | None = None
    cols: tuple[ColumnElement[Any], ...] = ()
    bounds: tuple[float, float, float, float] | None = None  # of a geometry literal
    as_type: Callable[[str], ColumnElement[Any]] | None = None  # of a JSON member: as text, number, string, bool

    def typed(self, kind: str) -> ColumnElement[Any]:
        """This JSON member as ``kind`` (see ``SqlDialect.json_as``); other values as they are."""
        return self.as_type(kind) if self.as_type is not None else self.sql


def any_number(v: Value) -> ColumnElement[Any]:
    """The number of an untyped value (``kind`` any), NULL when it holds no number.

    The number column also holds a boolean as 1.0 or 0.0 (for its index); arithmetic
    and the math functions must not see those.
    """
    tag, number = v.cols[0], v.cols[1]
    return case((or_(tag == codec.INT, tag == codec.FLOAT), number), else_=None)


def _error(call: Call, message: str) -> QuerySyntaxError:
    return QuerySyntaxError(f"{call.name}(): {message}", option="$filter", position=call.pos)


def _string(call: Call, v: Value) -> ColumnElement[Any]:
    if v.kind == "json":
        return v.typed("text")
    if v.kind == "string":
        return v.sql
    if v.kind == "any":
        return v.cols[2]
    raise _error(call, f"expects text, found a {v.kind}")


def _number(call: Call, v: Value) -> ColumnElement[Any]:
    if v.kind == "json":
        return v.typed("number")
    if v.kind == "number":
        return v.sql
    if v.kind == "any":
        return any_number(v)
    raise _error(call, f"expects a number, found a {v.kind}")


def _time(call: Call, v: Value) -> ColumnElement[Any]:
    """The instant of a time value (the start of an interval)."""
    if v.kind in ("time", "interval"):
        return v.sql
    raise _error(call, f"expects a date-time, found a {v.kind}")


def _interval(call: Call, v: Value) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    if v.kind == "interval":
        assert v.end is not None
        return v.sql, v.end
    if v.kind == "time":
        return v.sql, v.sql
    raise _error(call, f"expects a time instant or interval, found a {v.kind}")


def compile_call(call: Call, args: list[Value], dialect: Any) -> Value:
    """Compile one function call whose arguments are already compiled."""
    name = call.name
    a = args
    if name == "substringof":
        return Value("bool", dialect.index_of(_string(call, a[1]), _string(call, a[0])) > 0)
    if name == "startswith":
        s, p = _string(call, a[0]), _string(call, a[1])
        return Value("bool", func.substr(s, 1, func.length(p)) == p)
    if name == "endswith":
        s, p = _string(call, a[0]), _string(call, a[1])
        return Value(
            "bool", and_(func.length(s) >= func.length(p), func.substr(s, func.length(s) - func.length(p) + 1) == p)
        )
    if name == "length":
        return Value("number", func.length(_string(call, a[0])))
    if name == "indexof":
        return Value("number", dialect.index_of(_string(call, a[0]), _string(call, a[1])) - 1)
    if name == "substring":
        s = _string(call, a[0])
        start = _number(call, a[1]) + 1
        if len(a) == 3:
            return Value("string", func.substr(s, start, _number(call, a[2])))
        return Value("string", func.substr(s, start))
    if name in ("tolower", "toupper", "trim"):
        fn: Callable[..., ColumnElement[Any]] = {"tolower": func.lower, "toupper": func.upper, "trim": func.trim}[name]
        return Value("string", fn(_string(call, a[0])))
    if name == "concat":
        return Value("string", _string(call, a[0]).concat(_string(call, a[1])))
    if name in TIME_PARTS:
        return Value("number", dialect.time_part(_time(call, a[0]), name))
    if name == "fractionalseconds":
        return Value("number", (_time(call, a[0]) % 1_000_000) / 1_000_000.0)
    if name == "date":
        t = _time(call, a[0])
        return Value("time", t - t % DAY_US)
    if name == "time":
        return Value("timeofday", _time(call, a[0]) % DAY_US)
    if name == "totaloffsetminutes":
        _time(call, a[0])
        return Value("number", literal(0))  # times are stored and returned in UTC
    if name == "now":
        return Value("time", literal(now_micros()))
    if name == "mindatetime":  # no arguments (OData): the earliest date-time there is
        return Value("time", literal(MIN_MICROS))
    if name == "maxdatetime":
        return Value("time", literal(MAX_MICROS))
    if name == "round":
        # Halves away from zero on every store: PostgreSQL rounds a double's halves to even.
        n = _number(call, a[0])
        return Value("number", case((n < 0, -func.floor(0.5 - n)), else_=func.floor(n + 0.5)))
    if name in ("floor", "ceiling"):
        n = _number(call, a[0])
        return Value("number", {"floor": func.floor, "ceiling": func.ceil}[name](n))
    if name in GEO_PREDICATES:
        return _geo_predicate(call, GEO_PREDICATES[name], a[0], a[1], dialect)
    if name == "st_relate":
        pattern = _string(call, a[2])
        return Value("bool", dialect.geo_relate(_geometry(call, a[0]), _geometry(call, a[1]), pattern))
    if name == "geo.distance":
        return Value("number", dialect.geo_distance(_geometry(call, a[0]), _geometry(call, a[1])))
    if name == "geo.length":
        return Value("number", dialect.geo_length(_geometry(call, a[0])))
    if name in TEMPORAL:
        return Value("bool", _temporal(call, name, _interval(call, a[0]), _interval(call, a[1])))
    raise _error(call, "is not a SensorThings function")


def _geometry(call: Call, v: Value) -> ColumnElement[Any]:
    if v.kind == "geometry":
        return v.sql
    raise _error(call, f"expects a geometry (a geometry property or geography'...'), found a {v.kind}")


def _geo_predicate(call: Call, predicate: str, a: Value, b: Value, dialect: Any) -> Value:
    cond = dialect.geo_predicate(predicate, _geometry(call, a), _geometry(call, b))
    if predicate in _BBOX_PREFILTER and dialect.bbox_prefilter:
        boxes = [v.cols[1:5] if len(v.cols) == 5 else None for v in (a, b)]
        bounds = [v.bounds for v in (a, b)]
        for box, other in ((boxes[0], bounds[1]), (boxes[1], bounds[0])):
            if box is not None and other is not None:
                minx, miny, maxx, maxy = box
                o_minx, o_miny, o_maxx, o_maxy = other
                prefilter = and_(minx <= o_maxx, maxx >= o_minx, miny <= o_maxy, maxy >= o_miny)
                cond = and_(prefilter, cond)
    return Value("bool", cond)


def _temporal(
    call: Call,
    name: str,
    a: tuple[ColumnElement[Any], ColumnElement[Any]],
    b: tuple[ColumnElement[Any], ColumnElement[Any]],
) -> ColumnElement[bool]:
    """Allen-style relations on half-open intervals [start, end); an instant is [t, t]."""
    a0, a1 = a
    b0, b1 = b
    if name == "before":
        return or_(a1 < b0, and_(a1 == b0, a0 < a1))
    if name == "after":
        return or_(b1 < a0, and_(b1 == a0, b0 < b1))
    if name == "meets":
        return or_(a1 == b0, b1 == a0)
    if name == "during":
        return and_(a0 >= b0, case((a0 == a1, a1 < b1), else_=a1 <= b1))
    if name == "overlaps":
        return and_(a0 <= b1, b0 <= a1, or_(a0 < b1, a0 == a1), or_(b0 < a1, b0 == b1))
    if name == "starts":
        return a0 == b0
    return a1 == b1


def date_micros(value: dt.date) -> int:
    return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1_000_000)
