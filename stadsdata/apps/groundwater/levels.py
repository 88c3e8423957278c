"""From what a well sensor measures to the groundwater level in m NAP and its depth below the crawlspace floor.

Two kinds of sensor hang in a crawlspace well (a tube from the crawlspace into the ground):

* an **absolute pressure transducer** on a cable below the water surface: it measures water plus
  air pressure, so the air pressure of a reference barometer is subtracted (barometric
  compensation) and the rest converted to a water column with ``ρ·g``;
* a **distance sensor** (ultrasonic or radar) above the water, looking down the tube: the level is
  the sensor's height minus the distance.

The level then is in m NAP (Normaal Amsterdams Peil), from the tube top's height in m NAP, which
a surveyor measures. What a home cares about is how far the water is below its crawlspace floor.

All heights of a well are its ``Calibration``; a well has calibrations in time (a new cable, a
re-surveyed tube top), each valid from a moment on, and every raw reading is converted with the
calibration in force at its time (``derive``). When a calibration changes, the derived levels
from its start are recomputed (``recompute_from``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

WATER_DENSITY = 999.70
"""kg/m³: fresh water at 10 °C, the temperature of shallow groundwater in the Netherlands (about 10-11 °C).
At 5 °C it is 999.97, at 15 °C 999.10: ±0.06 % over the range a crawlspace well sees, 0.6 mm per metre of column."""
GRAVITY = 9.8127
"""m/s²: normal gravity at Enschede's latitude (52.22° N) by the international gravity formula (1967),
9.780327 (1 + 0.0053024 sin²φ - 0.0000058 sin²2φ); height and local anomalies change it by under 0.01 %."""
PA_PER_M = WATER_DENSITY * GRAVITY
"""Pascal per metre of water column, ρ·g ≈ 9809.76."""
HPA = 100.0
BAR = 100_000.0

SensorKind = Literal["pressure", "distance", "level"]
"""``level``: the network server's codec or the ingest mapping already gives the level in m NAP."""


class CalibrationError(ValueError):
    """A calibration that cannot convert a reading (a missing height, a reading before any calibration)."""


@dataclass(frozen=True)
class Calibration:
    """The heights of one well that turn its sensor's readings into levels, valid from ``valid_from`` on.

    ``well_top_nap``: the top of the tube in m NAP. ``crawlspace_floor_nap``: the floor of the
    crawlspace (the bottom of the space under the house) in m NAP. For a pressure sensor,
    ``cable_length``: metres from the tube top down to the pressure membrane, and ``absolute``:
    whether it measures absolute pressure (needs the barometer) or gauge pressure (a vented cable,
    which needs none). For a distance sensor, ``sensor_above_top``: metres from the tube top up to
    the sensor's zero point (negative when it sits inside the tube).
    """

    valid_from: datetime
    kind: SensorKind
    well_top_nap: float
    crawlspace_floor_nap: float
    cable_length: float | None = None
    absolute: bool = True
    sensor_above_top: float = 0.0

    def __post_init__(self) -> None:
        if self.valid_from.tzinfo is None:
            raise CalibrationError("valid_from needs a time zone (UTC or an offset)")
        if self.kind == "pressure" and (self.cable_length is None or not self.cable_length > 0):
            raise CalibrationError("a pressure sensor's calibration needs cable_length (m below the tube top), above 0")
        for name in ("well_top_nap", "crawlspace_floor_nap", "sensor_above_top"):
            if not math.isfinite(getattr(self, name)):
                raise CalibrationError(f"{name} must be a finite number")

    @property
    def sensor_nap(self) -> float:
        """Where the sensor's zero is, in m NAP: the pressure membrane, or the distance sensor's face."""
        if self.kind == "pressure":
            assert self.cable_length is not None
            return self.well_top_nap - self.cable_length
        if self.kind == "level":
            raise CalibrationError("a level sensor has no zero point of its own here: it reports m NAP")
        return self.well_top_nap + self.sensor_above_top

    def key(self) -> tuple[object, ...]:
        """What the derived levels depend on: two calibrations with the same key give the same levels."""
        return (
            self.valid_from,
            self.kind,
            self.well_top_nap,
            self.crawlspace_floor_nap,
            self.cable_length,
            self.absolute,
            self.sensor_above_top,
        )


def water_column(pressure_pa: float, air_pa: float = 0.0) -> float:
    """Metres of water above a membrane that measures ``pressure_pa``, minus the air pressure ``air_pa``."""
    return (pressure_pa - air_pa) / PA_PER_M


def level_from_pressure(cal: Calibration, pressure_pa: float, air_pa: float | None) -> float:
    """The level in m NAP from the sensor's pressure (Pa), compensated with the barometer's ``air_pa`` (Pa)."""
    if cal.kind != "pressure":
        raise CalibrationError("this well has a distance sensor, not a pressure sensor")
    if cal.absolute and air_pa is None:
        raise CalibrationError("an absolute pressure sensor needs the barometer's air pressure at the same time")
    return cal.sensor_nap + water_column(pressure_pa, air_pa if cal.absolute and air_pa is not None else 0.0)


def level_from_distance(cal: Calibration, distance_m: float) -> float:
    """The level in m NAP from the distance (m) the sensor measured down to the water."""
    if cal.kind != "distance":
        raise CalibrationError("this well has a pressure sensor, not a distance sensor")
    return cal.sensor_nap - distance_m


def depth_below_crawlspace(cal: Calibration, level_nap: float) -> float:
    """Metres the water is below the crawlspace floor (negative: water above the floor, in the crawlspace)."""
    return cal.crawlspace_floor_nap - level_nap


@dataclass(frozen=True)
class Reading:
    """One raw reading: a pressure in Pa (pressure sensors) or a distance in m (distance sensors)."""

    time: datetime
    value: float


@dataclass(frozen=True)
class Level:
    """A derived reading: the level in m NAP and the depth below the crawlspace floor, with the raw one's time."""

    time: datetime
    level_nap: float
    depth: float
    air_pa: float | None = None


class Barometer:
    """The reference barometer's series, read at any time by linear interpolation between two readings
    no further apart than ``max_gap_s`` (air pressure changes a few hPa in a few hours: a longer gap
    would guess)."""

    def __init__(self, readings: Iterable[Reading], max_gap_s: float = 3 * 3600) -> None:
        pairs = sorted((r.time, r.value) for r in readings)
        self.times = [t.timestamp() for t, _ in pairs]
        self.values = [v for _, v in pairs]
        self.max_gap_s = max_gap_s

    def at(self, when: datetime) -> float | None:
        """The air pressure (Pa) at ``when``; None when the barometer has no reading near enough."""
        t = when.timestamp()
        if not self.times:
            return None
        i = bisect.bisect_left(self.times, t)
        if i < len(self.times) and self.times[i] == t:
            return self.values[i]
        if i == 0 or i == len(self.times):
            near = self.times[0] if i == 0 else self.times[-1]
            if abs(near - t) <= self.max_gap_s / 2:
                return self.values[0] if i == 0 else self.values[-1]
            return None
        t0, t1 = self.times[i - 1], self.times[i]
        if t1 - t0 > self.max_gap_s:
            return None
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def calibration_at(calibrations: Sequence[Calibration], when: datetime) -> Calibration:
    """The calibration in force at ``when`` (the newest that starts at or before it)."""
    ordered = sorted(calibrations, key=lambda c: c.valid_from)
    found = [c for c in ordered if c.valid_from <= when]
    if not found:
        raise CalibrationError(f"no calibration of this well is valid at {when.isoformat()}")
    return found[-1]


def derive(
    readings: Iterable[Reading], calibrations: Sequence[Calibration], barometer: Barometer | None = None
) -> list[Level]:
    """Levels of ``readings`` with the calibration in force at each; readings that cannot be converted
    (before the first calibration, no barometer reading near them) are left out."""
    out: list[Level] = []
    for r in readings:
        try:
            cal = calibration_at(calibrations, r.time)
        except CalibrationError:
            continue
        air: float | None = None
        if cal.kind == "pressure":
            if cal.absolute:
                air = barometer.at(r.time) if barometer is not None else None
                if air is None:
                    continue
            level = level_from_pressure(cal, r.value, air)
        elif cal.kind == "level":
            level = r.value
        else:
            level = level_from_distance(cal, r.value)
        out.append(Level(r.time, round(level, 4), round(depth_below_crawlspace(cal, level), 4), air))
    return out


def recompute_from(old: Sequence[Calibration], new: Sequence[Calibration]) -> datetime | None:
    """From when the derived levels must be recomputed after the calibrations changed from ``old`` to
    ``new``; None when nothing changed. A changed or added calibration counts from its start, a
    removed one from its start too (its readings now fall under the calibration before it)."""
    a = {c.key() for c in old}
    b = {c.key() for c in new}
    changed = [c.valid_from for c in (*old, *new) if c.key() in a ^ b]
    return min(changed) if changed else None
