"""The simulators: deterministic, chunk-independent, realistic in the ways the demo promises."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import pytest
from shapely.geometry import Point, shape

from stadsdata.sim import Simulator, Station, city, weather
from stadsdata.sim.base import DAY, HOUR
from stadsdata.sim.counters import Counters
from stadsdata.sim.parking import Parking
from stadsdata.sim.places import buurten_geojson
from stadsdata.sim.rhythm import event_window
from stadsdata.sim.wells import Wells

ANCHOR = int(datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp())


def series(sim: Simulator, station: Station, start: float, end: float) -> list[tuple[int, dict[str, float] | None]]:
    return [(t, sim.sample(station, t)) for t in station.slots(start, end)]


def test_same_seed_same_city_and_readings() -> None:
    a, b = city(5, ANCHOR), city(5, ANCHOR)
    for x, y in zip(a, b, strict=True):
        assert x.stations == y.stations
        for st in x.stations[:2]:
            assert series(x, st, ANCHOR - DAY, ANCHOR) == series(y, st, ANCHOR - DAY, ANCHOR)


def test_another_seed_another_city() -> None:
    a, b = city(5, ANCHOR)[0], city(6, ANCHOR)[0]
    assert [(s.lon, s.lat) for s in a.stations] != [(s.lon, s.lat) for s in b.stations]


def test_readings_do_not_depend_on_how_time_is_cut() -> None:
    """A history computed in one go equals one computed in pieces, in any order (backfill, then live)."""
    for sim in city(1, ANCHOR):
        st = sim.stations[0]
        whole = series(sim, st, ANCHOR - 2 * DAY, ANCHOR)
        fresh = type(sim)(1, ANCHOR)
        pieces = series(fresh, st, ANCHOR - DAY, ANCHOR) + series(fresh, st, ANCHOR - 2 * DAY, ANCHOR - DAY)
        assert sorted(pieces, key=lambda p: p[0]) == whole


def test_slots_are_on_the_station_grid() -> None:
    st = city(1, ANCHOR)[1].stations[0]
    slots = list(st.slots(ANCHOR - HOUR, ANCHOR))
    assert len(slots) == HOUR // st.interval
    assert all((t - st.phase) % st.interval == 0 and ANCHOR - HOUR < t <= ANCHOR for t in slots)


def test_some_station_reports_every_20_seconds() -> None:
    """A live demo shows new data soon after it starts, whenever that is."""
    times = sorted(t for sim in city(9, ANCHOR) for st in sim.stations for t in st.slots(ANCHOR, ANCHOR + 3600))
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 20


def test_every_station_is_marked_simulated_and_placed_in_enschede() -> None:
    outline = [shape(f["geometry"]) for f in buurten_geojson()["features"]]
    keys = set()
    for sim in city(1, ANCHOR):
        for st in sim.stations:
            assert "simulated" in st.description
            assert st.properties["owner"] and st.properties["licence"]
            assert any(g.contains(Point(st.lon, st.lat)) for g in outline), st.name
            keys.add(st.key)
    assert len(keys) == sum(len(s.stations) for s in city(1, ANCHOR))


def test_wells_rise_after_real_rain_with_a_lag() -> None:
    """The replayed weather of a wet spell raises the level, and the rise peaks days after the rain."""
    wells = Wells(3, ANCHOR)
    st = wells.stations[0]
    day0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) // DAY
    # The wettest day of the replayed weather in the first months of 2026.
    wet = max(range(day0, day0 + 90), key=lambda d: weather.weather(weather.day_of(d * DAY)).precip_mm)
    assert weather.weather(weather.day_of(wet * DAY)).precip_mm > 10
    levels = [wells.level(st, (wet + k) * DAY) for k in range(0, 8)]
    assert max(levels) > levels[0]
    assert max(range(8), key=lambda k: levels[k]) >= 1  # the peak comes later than the rain


def test_one_well_drifts_and_one_battery_dies() -> None:
    wells = Wells(3, ANCHOR)
    dying = next(s for s in wells.stations if s.key == wells.dying)
    before = [p for _, p in series(wells, dying, wells.dies_at - DAY, wells.dies_at) if p]
    after = [p for _, p in series(wells, dying, wells.dies_at, ANCHOR)]
    assert before and all(p is None for p in after)
    assert (
        before[-1]["Bat_V"]
        < 3.1
        < [p for _, p in series(wells, dying, ANCHOR - 30 * DAY, ANCHOR - 29 * DAY) if p][0]["Bat_V"]
    )
    drifting = next(s for s in wells.stations if s.key == wells.drifting)
    true_change = wells.level(drifting, ANCHOR) - wells.level(drifting, ANCHOR - 30 * DAY)
    readings = dict(series(wells, drifting, ANCHOR - 30 * DAY - HOUR, ANCHOR))
    first = next(p for p in readings.values() if p)["Water_deep_cm"]
    last = next(p for p in reversed(list(readings.values())) if p)["Water_deep_cm"]
    assert (last - first) / 100 - true_change == pytest.approx(30 * 0.006, abs=0.03)


def test_counters_follow_day_and_week_and_peak_at_the_event() -> None:
    counters = Counters(1, ANCHOR)
    square = next(s for s in counters.stations if s.key == "counter-oude-markt")
    start, end = event_window(ANCHOR)
    during = statistics.mean(counters.expected(square, t) for t in range(start, end, 300))
    week_before = statistics.mean(counters.expected(square, t) for t in range(start - 7 * DAY, end - 7 * DAY, 300))
    assert during > 2 * week_before
    night = counters.expected(square, int(datetime(2026, 11, 18, 3, tzinfo=UTC).timestamp()))  # a Wednesday
    afternoon = counters.expected(square, int(datetime(2026, 11, 18, 13, tzinfo=UTC).timestamp()))
    assert afternoon > 10 * night


def test_parking_stays_within_capacity() -> None:
    parking = Parking(1, ANCHOR)
    for st in parking.stations:
        values = [p["occupied"] for _, p in series(parking, st, ANCHOR - 7 * DAY, ANCHOR) if p]
        assert min(values) >= 0 and max(values) <= st.properties["capacity"]
        assert max(values) > 0.5 * st.properties["capacity"]


def test_weather_replays_a_real_year() -> None:
    assert weather.reference_day(datetime(2026, 3, 1).date()).year == 2006
    assert weather.reference_day(datetime(2028, 2, 29).date()).isoformat() == "2008-02-29"
    assert weather.reference_day(datetime(2027, 2, 29 - 1).date()).isoformat() == "2007-02-28"
    assert -5 < weather.temperature(ANCHOR) < 20
