"""Time instants, intervals and geometries: parsing from and formatting to JSON.

Times are held as integer microseconds since the Unix epoch (UTC) everywhere
inside stadsdata; they enter and leave as ISO 8601 strings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import shapely.geometry
from shapely.errors import GEOSException

from stadsdata.errors import ValidationError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

Micros = int
Interval = tuple[Micros, Micros]


def now_micros() -> Micros:
    return to_micros(dt.datetime.now(dt.UTC))


def to_micros(value: dt.datetime) -> Micros:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _US


def parse_instant(text: object, field: str) -> Micros:
    """An ISO 8601 date-time with or without offset (no offset means UTC)."""
    if not isinstance(text, str):
        raise ValidationError(
            f"{field} must be an ISO 8601 date-time string such as '2026-11-22T10:00:00Z'", field=field
        )
    try:
        return to_micros(dt.datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise ValidationError(
            f"{field}: {text!r} is not an ISO 8601 date-time (expected e.g. '2026-11-22T10:00:00Z')",
            field=field,
        ) from None


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
    return (_EPOCH + dt.timedelta(days=days)).strftime("%Y-%m-%dT")


def format_instant(us: Micros) -> str:
    """ISO 8601 in UTC with a ``Z``; milli- or microseconds only when there are any.

    On the hot path of every response: the date part is cached, the rest is arithmetic.
    """
    seconds, frac = divmod(us, 1_000_000)
    days, of_day = divmod(seconds, 86_400)
    hours, rest = divmod(of_day, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_day(days)}{hours:02d}:{minutes:02d}:{secs:02d}"
    if not frac:
        return text + "Z"
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


_GEOJSON_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
    "Feature",
}


def geometry_bounds(value: object, field: str) -> tuple[float, float, float, float]:
    """Check a GeoJSON geometry (or Feature) and return its bounding box."""
    if not isinstance(value, dict) or value.get("type") not in _GEOJSON_TYPES:
        raise ValidationError(
            f'{field} must be a GeoJSON geometry object such as {{"type": "Point", "coordinates": [6.89, 52.22]}}',
            field=field,
        )
    geometry: Any = value
    if value["type"] == "Feature":
        geometry = value.get("geometry")
        if not isinstance(geometry, dict):
            raise ValidationError(f"{field}: a GeoJSON Feature needs a 'geometry' object", field=field)
    try:
        shape = shapely.geometry.shape(geometry)
        bounds: tuple[float, float, float, float] = tuple(shape.bounds)
    except (GEOSException, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
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
