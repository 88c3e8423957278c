"""Time instants, intervals and geometries: parsing from and formatting to JSON.

Times are held as integer microseconds since the Unix epoch (UTC) everywhere
inside stadsdata; they enter and leave as ISO 8601 strings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import shapely.geometry
from shapely.errors import ShapelyError

from stadsdata.errors import ValidationError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Micros = int
Interval = tuple[Micros, Micros]


def now_micros() -> Micros:
    return to_micros(dt.datetime.now(dt.UTC))


def to_micros(value: dt.datetime) -> Micros:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    since = value - _EPOCH
    # From the timedelta's parts: a third of the time of dividing it by a microsecond, for every row of a bulk create.
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


MIN_MICROS = to_micros(dt.datetime.min.replace(tzinfo=dt.UTC))
MAX_MICROS = to_micros(dt.datetime.max.replace(tzinfo=dt.UTC))


_fromisoformat = dt.datetime.fromisoformat


def parse_instant(text: object, field: str) -> Micros:
    """An ISO 8601 date-time with or without offset (no offset means UTC), in years 1 to 9999 UTC."""
    try:
        us = to_micros(_fromisoformat(text))  # type: ignore[arg-type]
    except TypeError:
        raise ValidationError(
            f"{field} must be an ISO 8601 date-time string such as '2026-11-22T10:00:00Z'", field=field
        ) from None
    except (ValueError, OverflowError):
        raise ValidationError(
            f"{field}: {text!r} is not an ISO 8601 date-time (expected e.g. '2026-11-22T10:00:00Z')",
            field=field,
        ) from None
    if not MIN_MICROS <= us <= MAX_MICROS:
        raise ValidationError(f"{field}: {text!r} is outside the years 1 to 9999 once converted to UTC", field=field)
    return us


def parse_interval(text: object, field: str) -> Interval:
    """An ISO 8601 interval ``start/end`` with start not after end."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValidationError(
            f"{field} must be an ISO 8601 interval such as '2026-11-22T10:00:00Z/2026-11-22T11:00:00Z'",
            field=field,
        )
    start_text, end_text = text.split("/")
    start, end = parse_instant(start_text, field), parse_instant(end_text, field)
    if start > end:
        raise ValidationError(f"{field}: the interval {text!r} ends before it starts", field=field)
    return start, end


def parse_instant_or_interval(text: object, field: str) -> tuple[Micros, Micros | None]:
    if isinstance(text, str) and "/" in text:
        return parse_interval(text, field)
    return parse_instant(text, field), None


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    d = _EPOCH + dt.timedelta(days=days)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T"  # strftime's %Y leaves years below 1000 unpadded


@cache  # at most 86,400 entries
def _clock(of_day: int) -> str:
    hours, rest = divmod(of_day, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def format_instant(us: Micros) -> str:
    """ISO 8601 in UTC with a ``Z``; milli- or microseconds only when there are any.

    On the hot path of every response: the date part and the time of day are cached.
    """
    seconds, frac = divmod(us, 1_000_000)
    days, of_day = divmod(seconds, 86_400)
    if not frac:
        return _day(days) + _clock(of_day) + "Z"
    text = _day(days) + _clock(of_day)
    if frac % 1000 == 0:
        return f"{text}.{frac // 1000:03d}Z"
    return f"{text}.{frac:06d}Z"


def format_interval(start: Micros, end: Micros) -> str:
    return f"{format_instant(start)}/{format_instant(end)}"


@dataclass(frozen=True)
class GeoValue:
    """A validated GeoJSON object with its bounding box (minx, miny, maxx, maxy)."""

    geojson: dict[str, Any]
    bounds: tuple[float, float, float, float]


# The nesting depth of "coordinates" for each GeoJSON geometry type (RFC 7946 §3.1).
_COORDINATE_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
_GEOJSON_TYPES = {*_COORDINATE_DEPTH, "GeometryCollection", "Feature"}


def _check_position(position: object, where: str) -> None:
    if (
        not isinstance(position, list)
        or not 2 <= len(position) <= 3
        or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in position)
    ):
        raise ValueError(f"{where} must be a position: an array of 2 or 3 numbers, as in [6.89, 52.22]")


def _check_coordinates(value: object, depth: int, where: str) -> None:
    if depth == 0:
        _check_position(value, where)
        return
    if not isinstance(value, list):
        raise ValueError(f"{where} must be an array")
    for i, item in enumerate(value):
        _check_coordinates(item, depth - 1, f"{where}[{i}]")


def check_geojson(value: object, where: str, nesting: int = 0) -> None:
    """Raise ValueError naming the first thing that makes ``value`` not a GeoJSON geometry (RFC 7946)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a GeoJSON object")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in _GEOJSON_TYPES or (nesting and kind == "Feature"):
        raise ValueError(f"{where}.type must be one of {', '.join(sorted(_GEOJSON_TYPES - {'Feature'}))}")
    if kind == "Feature":
        check_geojson(value.get("geometry"), f"{where}.geometry", nesting + 1)
    elif kind == "GeometryCollection":
        members = value.get("geometries")
        if not isinstance(members, list) or nesting > 8:
            raise ValueError(f"{where}.geometries must be an array of geometries")
        for i, member in enumerate(members):
            check_geojson(member, f"{where}.geometries[{i}]", nesting + 1)
    else:
        _check_coordinates(value.get("coordinates"), _COORDINATE_DEPTH[kind], f"{where}.coordinates")


def geometry_bounds(value: object, field: str) -> tuple[float, float, float, float]:
    """Check a GeoJSON geometry (or Feature) and return its bounding box."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValidationError(
            f'{field} must be a GeoJSON geometry object such as {{"type": "Point", "coordinates": [6.89, 52.22]}}',
            field=field,
        )
    try:
        check_geojson(value, field)
        geometry = value["geometry"] if value["type"] == "Feature" else value
        shape = shapely.geometry.shape(geometry)
        bounds: tuple[float, float, float, float] = tuple(shape.bounds)
    except (ShapelyError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValidationError(f"{field} is not a valid GeoJSON geometry: {exc}", field=field) from None
    if shape.is_empty:
        raise ValidationError(f"{field} is an empty geometry", field=field)
    if any(b != b for b in bounds):  # NaN coordinates
        raise ValidationError(f"{field} has coordinates that are not numbers", field=field)
    return bounds


def envelope(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    """A GeoJSON Polygon (or Point when degenerate) for a bounding box."""
    minx, miny, maxx, maxy = bounds
    if minx == maxx and miny == maxy:
        return {"type": "Point", "coordinates": [minx, miny]}
    return {
        "type": "Polygon",
        "coordinates": [[[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]],
    }


def format_value(kind: str, value: Any) -> Any:
    """A property value as clients see it in JSON (``kind`` is a ``Kind`` value)."""
    if kind == "instant":
        return format_instant(value)
    if kind == "interval":
        return format_interval(*value)
    if kind == "instant_or_interval":
        start, end = value
        return format_instant(start) if end is None else format_interval(start, end)
    if isinstance(value, GeoValue):
        return value.geojson
    return value
