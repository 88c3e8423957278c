"""Level conversions, checked against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stadsdata.apps.groundwater import levels
from stadsdata.apps.groundwater.levels import Barometer, Calibration, Reading

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PRESSURE = Calibration(T0, "pressure", well_top_nap=37.95, crawlspace_floor_nap=37.80, cable_length=2.50)
DISTANCE = Calibration(T0, "distance", well_top_nap=37.95, crawlspace_floor_nap=37.80, sensor_above_top=0.05)


def test_rho_g() -> None:
    # 999.70 kg/m³ × 9.8127 m/s² = 9809.756 Pa per metre of water
    assert pytest.approx(9809.75619) == levels.PA_PER_M


def test_absolute_pressure_with_barometric_compensation() -> None:
    # 1.100 bar absolute under water, 1013.0 hPa air: 110000 - 101300 = 8700 Pa = 8700 / 9809.756 = 0.88687 m of
    # water above the membrane; the membrane hangs 2.50 m below a tube top at 37.95 m NAP, at 35.45 m NAP
    level = levels.level_from_pressure(PRESSURE, 1.100 * levels.BAR, 1013.0 * levels.HPA)
    assert level == pytest.approx(36.33687, abs=1e-5)
    # the crawlspace floor is at 37.80 m NAP: the water is 1.46313 m below it
    assert levels.depth_below_crawlspace(PRESSURE, level) == pytest.approx(1.46313, abs=1e-5)


def test_uncompensated_pressure_would_be_ten_metres_off() -> None:
    with pytest.raises(levels.CalibrationError, match="barometer"):
        levels.level_from_pressure(PRESSURE, 110_000, None)


def test_gauge_pressure_needs_no_barometer() -> None:
    gauge = Calibration(T0, "pressure", 37.95, 37.80, cable_length=2.50, absolute=False)
    # 0.0870 bar gauge = 8700 Pa: the same 0.88687 m column
    assert levels.level_from_pressure(gauge, 0.0870 * levels.BAR, None) == pytest.approx(36.33687, abs=1e-5)


def test_distance_from_the_tube_top() -> None:
    # the sensor's face is 0.05 m above the tube top (38.00 m NAP); it measures 1.234 m down to the water:
    # 38.00 - 1.234 = 36.766 m NAP, 37.80 - 36.766 = 1.034 m below the crawlspace floor
    level = levels.level_from_distance(DISTANCE, 1.234)
    assert level == pytest.approx(36.766)
    assert levels.depth_below_crawlspace(DISTANCE, level) == pytest.approx(1.034)
    # water in the crawlspace: 5 cm above its floor
    assert levels.depth_below_crawlspace(DISTANCE, 37.85) == pytest.approx(-0.05)


def test_barometer_interpolates_and_refuses_long_gaps() -> None:
    baro = Barometer([Reading(T0, 101_000), Reading(T0 + timedelta(hours=2), 101_400)])
    assert baro.at(T0 + timedelta(hours=1)) == pytest.approx(101_200)  # 1012 hPa halfway
    assert baro.at(T0) == 101_000
    far = Barometer([Reading(T0, 101_000), Reading(T0 + timedelta(hours=5), 101_400)])
    assert far.at(T0 + timedelta(hours=2)) is None


def test_derive_uses_the_calibration_in_force_and_recompute_starts_at_the_change() -> None:
    baro = Barometer([Reading(T0 + timedelta(hours=h), 101_300) for h in range(0, 49)])
    raw = [Reading(T0 + timedelta(hours=h), 110_000) for h in range(0, 48, 6)]
    old = [PRESSURE]
    derived = levels.derive(raw, old, baro)
    assert [round(x.level_nap, 4) for x in derived] == [36.3369] * 8
    # the tube was re-surveyed a day later: its top is at 37.93, 2 cm lower than thought
    resurvey = Calibration(T0 + timedelta(days=1), "pressure", 37.93, 37.80, cable_length=2.50)
    new = [PRESSURE, resurvey]
    assert levels.recompute_from(old, new) == T0 + timedelta(days=1)
    assert levels.recompute_from(new, list(new)) is None
    again = levels.derive(raw, new, baro)
    assert [x.level_nap for x in again[:4]] == [x.level_nap for x in derived[:4]]
    assert [round(x.level_nap, 4) for x in again[4:]] == [36.3169] * 4
    assert again[4].depth == pytest.approx(37.80 - 36.3169, abs=1e-4)


def test_readings_without_calibration_or_barometer_are_left_out() -> None:
    raw = [Reading(T0 - timedelta(hours=1), 110_000), Reading(T0 + timedelta(hours=10), 110_000)]
    assert levels.derive(raw, [PRESSURE], Barometer([])) == []
    with pytest.raises(levels.CalibrationError, match="cable_length"):
        Calibration(T0, "pressure", 37.95, 37.80)
