"""Enschede's neighbourhoods (CBS buurten 2021, ``data/SOURCE.md``): where simulated homes are placed."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from stadsdata.sim.base import uniform

BUURTEN = "data/enschede_buurten_2021.geojson"


@cache
def buurten_geojson() -> dict[str, Any]:
    """The neighbourhood outlines as a GeoJSON FeatureCollection (the dashboard's base layer too)."""
    text = resources.files("stadsdata.sim").joinpath(BUURTEN).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def _shapes() -> dict[str, tuple[str, BaseGeometry]]:
    return {
        f["properties"]["buurtnaam"]: (f["properties"]["buurtcode"], shape(f["geometry"]))
        for f in buurten_geojson()["features"]
    }


def buurtcode(name: str) -> str:
    return _shapes()[name][0]


def point_in(name: str, seed: int, key: str) -> tuple[float, float]:
    """A point (lon, lat) inside the neighbourhood ``name``, the same for the same seed and key."""
    _, geometry = _shapes()[name]
    west, south, east, north = geometry.bounds
    # Not too close to the outline: homes are inside the neighbourhood, not on its border.
    inner = geometry.buffer(-0.0015) if geometry.buffer(-0.0015).area > 0 else geometry
    for i in range(1000):
        lon = west + (east - west) * uniform(seed, key, "lon", i)
        lat = south + (north - south) * uniform(seed, key, "lat", i)
        if inner.contains(Point(lon, lat)):
            return round(lon, 5), round(lat, 5)
    point = geometry.representative_point()
    return round(point.x, 5), round(point.y, 5)
