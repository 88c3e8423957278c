"""Geometry functions for SQLite, computed with shapely (GEOS).

Geometries are stored as GeoJSON text and arrive from queries as WKT; both
parse here, with a cache, since the same literal meets many rows.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

import orjson
import shapely
import shapely.geometry
import shapely.wkt
from shapely.geometry.base import BaseGeometry


@lru_cache(maxsize=4096)
def parse(text: str) -> BaseGeometry | None:
    """A GeoJSON geometry or Feature, or a WKT string; None when it is neither."""
    try:
        if text.lstrip().startswith("{"):
            doc = orjson.loads(text)
            if doc.get("type") == "Feature":
                doc = doc.get("geometry")
            return shapely.geometry.shape(doc)
        return shapely.wkt.loads(text)
    except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError, orjson.JSONDecodeError):
        return None


def predicate(name: str, a: str | None, b: str | None) -> int | None:
    ga, gb = parse(a) if a else None, parse(b) if b else None
    if ga is None or gb is None:
        return None
    return int(getattr(ga, name)(gb))


def relate(a: str | None, b: str | None, pattern: str | None) -> int | None:
    ga, gb = parse(a) if a else None, parse(b) if b else None
    if ga is None or gb is None or pattern is None:
        return None
    try:
        return int(ga.relate_pattern(gb, pattern))
    except shapely.errors.ShapelyError:
        return None


def distance(a: str | None, b: str | None) -> float | None:
    ga, gb = parse(a) if a else None, parse(b) if b else None
    if ga is None or gb is None:
        return None
    return float(ga.distance(gb))


def _linear_length(g: shapely.Geometry) -> float:
    """The length of the curves in ``g`` (OGC Simple Features, as PostGIS ST_Length):
    points and surfaces have none, so a polygon's length is 0, not its perimeter."""
    if isinstance(g, (shapely.LineString, shapely.MultiLineString)):
        return float(g.length)
    if isinstance(g, shapely.GeometryCollection) and not isinstance(g, (shapely.MultiPoint, shapely.MultiPolygon)):
        return sum(_linear_length(part) for part in g.geoms)
    return 0.0


def length(a: str | None) -> float | None:
    ga = parse(a) if a else None
    return None if ga is None else _linear_length(ga)


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("sd_geo_predicate", 3, predicate, deterministic=True)
    conn.create_function("sd_geo_relate", 3, relate, deterministic=True)
    conn.create_function("sd_geo_distance", 2, distance, deterministic=True)
    conn.create_function("sd_geo_length", 1, length, deterministic=True)
