"""The bundled intersection, and cyclists riding along its lanes."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from stadsdata.apps.cycling.eta import Fix
from stadsdata.apps.cycling.topology import Intersection, load

SCENARIO = Path(__file__).parents[3] / "stadsdata" / "apps" / "cycling" / "scenarios" / "hengelosestraat"


@pytest.fixture(scope="session")
def intersection() -> Intersection:
    return load(SCENARIO / "intersection.json")


def fix_at(
    intersection: Intersection,
    lane_id: str,
    distance: float,
    t: float,
    speed: float | None,
    station: str = "a1b2c3",
    noise: float = 0.0,
    rng: random.Random | None = None,
    heading: float | None = None,
) -> Fix:
    """A position ``distance`` metres before the stop line of ``lane_id`` (negative: past it), riding towards it."""
    lane = next(lane for _, lane in intersection.lanes() if lane.id == lane_id)
    proj = intersection.projection
    line = proj.line(tuple(reversed(lane.path)))
    (x0, y0), (x1, y1) = line.coords[-2], line.coords[-1]
    seg = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / seg, (y1 - y0) / seg
    if distance >= 0:
        p = line.interpolate(line.length - distance)
        x, y = p.x, p.y
    else:
        x, y = x1 - distance * ux, y1 - distance * uy
    if noise and rng is not None:
        x += rng.gauss(0, noise)
        y += rng.gauss(0, noise)
    lon, lat = proj.to_lonlat(x, y)
    bearing = math.degrees(math.atan2(ux, uy)) % 360 if heading is None else heading
    return Fix(station, t, lon, lat, speed, bearing)
