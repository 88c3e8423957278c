"""Where a cyclist is on an approach, and when they reach the stop line.

A position from the app (a phone's GNSS fix: position, speed, heading, time) is matched to
the ingress cycle lane whose path it lies close to and runs along, then projected onto that
path to give the distance to the stop line. A two-state Kalman filter (distance, speed;
constant speed with random acceleration) smooths the noisy distance and the noisy GNSS
speed; the arrival time is the filtered distance over the filtered speed. A cyclist whose
filtered speed falls below ``stop_speed`` is *stopped*: no arrival time is given, because a
standing cyclist may start again at any moment or never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import LineString, Point

from stadsdata.apps.cycling.topology import Approach, Intersection, Lane


@dataclass(frozen=True)
class Fix:
    """One position report from the app. ``station`` is a pseudonym that the app changes often."""

    station: str
    time: float
    lon: float
    lat: float
    speed: float | None = None
    heading: float | None = None
    accuracy: float | None = None
    """The phone's estimate of its horizontal error, metres (None: not given)."""


@dataclass(frozen=True)
class Match:
    approach: Approach
    lane: Lane
    distance: float
    """Metres along the lane to its stop line; negative once past it."""
    offset: float
    """Metres from the lane's path, sideways."""


class LaneMatcher:
    """Matches positions to the cycle lanes of one intersection."""

    def __init__(self, intersection: Intersection, max_offset: float = 12.0, max_heading_error: float = 60.0) -> None:
        self.intersection = intersection
        self.max_offset = max_offset
        self.max_heading_error = max_heading_error
        proj = intersection.projection
        # Each lane's path reversed, so that it runs towards the stop line.
        self._lines: list[tuple[Approach, Lane, LineString]] = [
            (a, lane, proj.line(tuple(reversed(lane.path)))) for a, lane in intersection.lanes("cycle")
        ]

    def match(self, fix: Fix, passed_margin: float = 15.0) -> Match | None:
        """The lane ``fix`` is on, or None. Positions up to ``passed_margin`` metres past a stop line still match
        (so that passing the line can be seen); a heading is only used when the cyclist moves."""
        x, y = self.intersection.projection.to_metres(fix.lon, fix.lat)
        best: Match | None = None
        for approach, lane, line in self._lines:
            along, offset, bearing = _project(line, x, y, passed_margin)
            if offset > self.max_offset or along is None:
                continue
            moving = fix.speed is None or fix.speed > 1.0
            if fix.heading is not None and moving and _angle(fix.heading, bearing) > self.max_heading_error:
                continue
            distance = line.length - along
            if best is None or offset < best.offset:
                best = Match(approach, lane, distance, offset)
        return best


def _project(line: LineString, x: float, y: float, passed_margin: float) -> tuple[float | None, float, float]:
    """Along-distance (None when before the start or too far past the end), sideways offset and the line's bearing
    there (degrees clockwise from north)."""
    p = Point(x, y)
    along = float(line.project(p))
    coords = line.coords
    if along <= 0.0 or along >= line.length:
        # Outside the segment range: extend the last segment past the stop line for up to passed_margin metres.
        (x0, y0), (x1, y1) = (coords[-2], coords[-1]) if along > 0 else (coords[0], coords[1])
        dx, dy = x1 - x0, y1 - y0
        seg = math.hypot(dx, dy)
        t = ((x - x1) * dx + (y - y1) * dy) / seg if along > 0 else ((x - x0) * dx + (y - y0) * dy) / seg
        if along <= 0.0 or t > passed_margin:
            return None, math.inf, 0.0
        offset = abs((x - x1) * dy - (y - y1) * dx) / seg
        return line.length + t, offset, math.degrees(math.atan2(dx, dy)) % 360
    q = line.interpolate(along)
    offset = float(p.distance(q))
    ahead = line.interpolate(min(along + 1.0, line.length))
    behind = line.interpolate(max(along - 1.0, 0.0))
    bearing = math.degrees(math.atan2(ahead.x - behind.x, ahead.y - behind.y)) % 360
    return along, offset, bearing


def _angle(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


@dataclass(frozen=True)
class Estimate:
    time: float
    distance: float
    """Filtered metres to the stop line."""
    speed: float
    """Filtered speed towards the stop line, m/s."""
    stopped: bool

    @property
    def eta(self) -> float | None:
        """Seconds until the stop line is reached, or None when stopped."""
        if self.stopped:
            return None
        return max(self.distance, 0.0) / self.speed


class ArrivalEstimator:
    """Kalman filter on (distance to stop line, speed) for one cyclist on one lane.

    ``position_sigma`` and ``speed_sigma`` are the standard deviations of the GNSS position (metres,
    along the lane) and speed (m/s); ``accel_sigma`` is how much a cyclist's speed changes (m/s²).
    """

    def __init__(
        self,
        position_sigma: float = 4.0,
        speed_sigma: float = 0.5,
        accel_sigma: float = 0.6,
        stop_speed: float = 1.0,
    ) -> None:
        self.position_var = position_sigma**2
        self.speed_var = speed_sigma**2
        self.accel_var = accel_sigma**2
        self.stop_speed = stop_speed
        self._t: float | None = None
        self._s = 0.0  # distance to go
        self._v = 0.0  # speed towards the stop line
        self._p = [[0.0, 0.0], [0.0, 0.0]]

    def update(self, time: float, distance: float, speed: float | None) -> Estimate:
        if self._t is None:
            self._t = time
            self._s = distance
            self._v = speed if speed is not None else 4.0
            self._p = [[self.position_var, 0.0], [0.0, self.speed_var if speed is not None else 4.0]]
        else:
            dt = max(time - self._t, 0.0)
            self._t = time
            self._predict(dt)
            self._correct(0, distance, self.position_var)
            if speed is not None:
                self._correct(1, speed, self.speed_var)
        self._v = max(self._v, 0.0)
        return Estimate(time, self._s, self._v, self._v < self.stop_speed)

    def _predict(self, dt: float) -> None:
        # Distance to go shrinks with speed: s' = s - v dt.
        self._s -= self._v * dt
        p = self._p
        q = self.accel_var
        p00 = p[0][0] - dt * (p[1][0] + p[0][1]) + dt * dt * p[1][1] + q * dt**4 / 4
        p01 = p[0][1] - dt * p[1][1] - q * dt**3 / 2
        p11 = p[1][1] + q * dt * dt
        self._p = [[p00, p01], [p01, p11]]

    def _correct(self, index: int, measured: float, variance: float) -> None:
        p = self._p
        innovation = measured - (self._s if index == 0 else self._v)
        s = p[index][index] + variance
        k0, k1 = p[0][index] / s, p[1][index] / s
        self._s += k0 * innovation
        self._v += k1 * innovation
        row = p[index]
        self._p = [
            [p[0][0] - k0 * row[0], p[0][1] - k0 * row[1]],
            [p[1][0] - k1 * row[0], p[1][1] - k1 * row[1]],
        ]
