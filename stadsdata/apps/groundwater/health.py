"""Sensor health of the wells: what broke the 2018 pilot was sensors that went quiet, flat or astray unseen.

Per well (``check``):

* **missing**: no uplink for 3 reporting intervals (``late``) or for 12 (``silent``);
* **battery**: the last battery voltage below ``LOW_BATTERY_V`` (a Li-SOCl₂ cell, 3.6 V new, sags
  under 3.3 V in its last weeks; the sensors in these wells run on them);
* **flatline**: 12 or more readings in the last 24 hours within 1 mm of each other: real water
  moves, a stuck sensor or a probe out of the water does not;
* **drift**: the well's level moves away from its neighbours' (same neighbourhood, else any other
  wells): the daily difference to their median has a trend of over ``DRIFT_M_PER_DAY`` over the
  last ``DRIFT_DAYS`` days, steady (R² ≥ 0.8). A fouled membrane or a cable that stretches drifts
  like that; groundwater under neighbouring homes rises and falls together. Each well is compared as
  its departure from its own mean over the days, since neighbouring wells stand at different heights.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

LOW_BATTERY_V = 3.3
LOW_BATTERY_PCT = 20
FLAT_M = 0.001
FLAT_MIN_READINGS = 12
DRIFT_M_PER_DAY = 0.003
DRIFT_DAYS = 14

Problem = Literal["late", "silent", "battery", "flatline", "drift"]


@dataclass(frozen=True)
class Issue:
    home: str
    problem: Problem
    detail: str


Series = Sequence[tuple[datetime, float]]


def missing(home: str, last: datetime | None, interval_s: int, now: datetime) -> Issue | None:
    if last is None:
        return Issue(home, "silent", "no reading ever")
    gone = (now - last).total_seconds()
    if gone > 12 * interval_s:
        return Issue(home, "silent", f"no uplink for {gone / 3600:.1f} h (every {interval_s // 60} min expected)")
    if gone > 3 * interval_s:
        return Issue(home, "late", f"no uplink for {gone / 60:.0f} min (every {interval_s // 60} min expected)")
    return None


def battery(home: str, value: float | None, percent: bool = False) -> Issue | None:
    """A low battery: in volts, or in percent (``percent``, as Milesight sensors report it; low under 20 %)."""
    if value is None:
        return None
    if percent and value < LOW_BATTERY_PCT:
        return Issue(home, "battery", f"battery at {value:.0f} %, under {LOW_BATTERY_PCT} %: replace it within weeks")
    if not percent and value < LOW_BATTERY_V:
        return Issue(home, "battery", f"battery at {value:.2f} V, under {LOW_BATTERY_V} V: replace it within weeks")
    return None


def flatline(home: str, levels: Series, now: datetime) -> Issue | None:
    recent = [v for t, v in levels if now - timedelta(hours=24) <= t <= now]
    if len(recent) >= FLAT_MIN_READINGS and max(recent) - min(recent) < FLAT_M:
        return Issue(home, "flatline", f"{len(recent)} readings in 24 h all within 1 mm: the sensor may be stuck")
    return None


def daily_means(levels: Series) -> dict[str, float]:
    days: dict[str, list[float]] = {}
    for t, v in levels:
        days.setdefault(t.date().isoformat(), []).append(v)
    return {d: sum(v) / len(v) for d, v in days.items()}


def _anomalies(days: dict[str, float]) -> dict[str, float]:
    if not days:
        return days
    mean = statistics.fmean(days.values())
    return {d: v - mean for d, v in days.items()}


def drift(home: str, levels: Series, neighbours: Mapping[str, Series], now: datetime) -> Issue | None:
    """Drift of ``home``'s levels from the median of its ``neighbours``' over the last ``DRIFT_DAYS`` days."""
    start = now - timedelta(days=DRIFT_DAYS)
    # each well as its departure from its own mean: wells stand at different heights, they move alike
    own = _anomalies(daily_means([(t, v) for t, v in levels if start <= t <= now]))
    others = [_anomalies(daily_means([(t, v) for t, v in s if start <= t <= now])) for s in neighbours.values()]
    xs: list[float] = []
    ys: list[float] = []
    for day in sorted(own):
        near = [o[day] for o in others if day in o]
        if len(near) >= 2:
            xs.append((datetime.fromisoformat(day) - datetime.fromisoformat(min(own))).days)
            ys.append(own[day] - statistics.median(near))
    if len(xs) < DRIFT_DAYS * 0.7:
        return None
    fit = statistics.linear_regression(xs, ys)
    predicted = [fit.intercept + fit.slope * x for x in xs]
    total = sum((y - statistics.fmean(ys)) ** 2 for y in ys)
    resid = sum((y - p) ** 2 for y, p in zip(ys, predicted, strict=True))
    r2 = 1 - resid / total if total > 0 else 0.0
    if abs(fit.slope) > DRIFT_M_PER_DAY and r2 >= 0.8:
        way = "up" if fit.slope > 0 else "down"
        return Issue(
            home,
            "drift",
            f"drifts {way} {abs(fit.slope) * 1000:.1f} mm a day against its {len(neighbours)} neighbours over "
            f"{len(xs)} days (R² {r2:.2f}): check the sensor",
        )
    return None
