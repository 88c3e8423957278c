"""Alert criteria (confirmation, hysteresis, rising trend, dedup), sensor health and the BRO/CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stadsdata.apps.groundwater import export, health
from stadsdata.apps.groundwater.alerts import AlertEvent, HomeState, NotifyError, State, deliver, evaluate
from stadsdata.apps.groundwater.levels import Calibration, Level
from stadsdata.apps.groundwater.registry import AlertSettings, Home, RegistryError, parse

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOME = Home(
    id="home-x",
    owner="resident-x",
    buurtcode="BU01530310",
    floor_nap=38.5,
    crawlspace_floor_nap=37.8,
    location=(6.89, 52.22),
    kind="distance",
    device_id="dev-x",
    calibrations=(Calibration(T0, "distance", 37.9, 37.8),),
    alert=AlertSettings(rise_per_day=10.0),  # the trend criterion out of the way here
    address="Geheim 1",
)


def levels(depths: list[float], step_h: float = 1.0) -> list[Level]:
    return [Level(T0 + timedelta(hours=i * step_h), 37.8 - d, d) for i, d in enumerate(depths)]


def test_threshold_needs_confirmation_and_clears_with_hysteresis() -> None:
    state = HomeState()
    # one spike above the limit is no alert; two readings are; 0.22 and 0.24 are within the hysteresis band
    series = levels([0.5, 0.15, 0.5, 0.19, 0.18, 0.22, 0.19, 0.24, 0.26, 0.15])
    events = evaluate(HOME, series, state)
    assert [(e.kind, e.state, e.time.hour) for e in events] == [("high", "raised", 4), ("high", "cleared", 8)]
    # the ninth reading (0.15) starts a streak of one: no alert yet; a run with nothing new finds nothing
    assert evaluate(HOME, series, state) == []
    assert state.high.streak == 1 and not state.high.active


def test_rising_trend() -> None:
    home = Home(**{**HOME.__dict__, "alert": AlertSettings()})
    # 1.00 m down, then rising 1 cm an hour (24 cm a day): at 0.24 m/day it reaches 0.20 m in 3 days from 0.92 m
    depths = [1.0] * 24 + [1.0 - 0.01 * k for k in range(1, 40)]
    events = evaluate(home, levels(depths), HomeState())
    raised = [e for e in events if e.kind == "rising"]
    assert raised and raised[0].state == "raised"
    assert raised[0].depth - 3 * (raised[0].rate_per_day or 0) < 0.20 <= raised[0].depth


def test_delivery_is_deduplicated_and_retried(tmp_path: Path) -> None:
    sent: list[str] = []

    class Flaky:
        fail = True

        def send(self, event: AlertEvent) -> None:
            if self.fail:
                raise NotifyError("down")
            sent.append(event.key)

    state = State()
    path = tmp_path / "state.json"
    events = evaluate(HOME, levels([0.1, 0.1]), state.homes.setdefault(HOME.id, HomeState()))
    notifier = Flaky()
    assert deliver(events, [notifier], state, lambda: state.save(path))
    assert sent == [] and len(state.pending) == 1
    notifier.fail = False
    again = State.load(path)
    assert deliver([], [notifier], again, lambda: again.save(path)) == []
    assert sent == [events[0].key]
    assert deliver(events, [notifier], again, lambda: again.save(path)) == []  # the same event: sent once only
    assert sent == [events[0].key]
    assert "Geheim" not in path.read_text()


def test_messages_in_dutch_and_english() -> None:
    e = evaluate(HOME, levels([0.1, 0.12]), HomeState())[0]
    assert "12 cm onder de bodem van de kruipruimte" in e.text("nl") and "(grens: 20 cm)" in e.text("nl")
    assert "12 cm below the crawlspace floor" in e.text("en")


def test_health() -> None:
    now = T0 + timedelta(days=20)
    assert health.missing("h", now - timedelta(minutes=20), 900, now) is None
    assert health.missing("h", now - timedelta(hours=1), 900, now).problem == "late"  # type: ignore[union-attr]
    assert health.missing("h", now - timedelta(hours=4), 900, now).problem == "silent"  # type: ignore[union-attr]
    assert health.battery("h", 3.1) is not None and health.battery("h", 3.5) is None
    assert health.battery("h", 15, percent=True) is not None and health.battery("h", 87, percent=True) is None
    hours = [now - timedelta(hours=h) for h in range(24)]
    assert health.flatline("h", [(t, 36.1234) for t in hours], now) is not None
    assert health.flatline("h", [(t, 36.1234 + 0.002 * (i % 2)) for i, t in enumerate(hours)], now) is None

    # three neighbours follow the same wave; one well creeps up 6 mm a day on top of it
    days = [T0 + timedelta(days=d, hours=h) for d in range(21) for h in range(0, 24, 6)]
    wave = {t: 0.1 * ((t - T0).total_seconds() / 86400 % 7) for t in days}
    neighbours = {f"n{i}": [(t, 36.0 + i * 0.3 + wave[t]) for t in days] for i in range(3)}
    drifting = [(t, 36.5 + wave[t] + 0.006 * (t - T0).total_seconds() / 86400) for t in days]
    issue = health.drift("d", drifting, neighbours, now)
    assert issue is not None and re.search(r"drifts up (5\.9|6\.0|6\.1) mm a day", issue.detail)
    assert (
        health.drift("n0", neighbours["n0"], {k: v for k, v in neighbours.items() if k != "n0"} | {"d": drifting}, now)
        is None
    )


def test_bro_and_csv_export() -> None:
    series = [(T0, 36.3369), (T0 + timedelta(hours=1), 36.34)]
    dossier = export.Dossier("GMW000000012345", 1, "12345678")
    provisional = export.bro_addition(dossier, series, result_time=T0 + timedelta(days=1))
    assert provisional["validationStatus"] == "voorlopig"
    assert provisional["measurementInstrumentType"] == "druksensor"
    assert provisional["airPressureCompensationType"] == "KNMImeting"
    assert provisional["timeValuePairs"][0] == {
        "time": "2026-11-01T00:00:00Z",
        "value": 36.337,
        "statusQualityControl": "nogNietBeoordeeld",
        "censorReason": None,
        "censoringLimitvalue": None,
    }
    assessed = export.bro_addition(dossier, series, "volledigBeoordeeld", rejected={series[1][0]})
    assert [p["statusQualityControl"] for p in assessed["timeValuePairs"]] == ["goedgekeurd", "afgekeurd"]
    rows = list(csv.DictReader(io.StringIO(export.to_csv(assessed))))
    assert rows[1]["gmwBroId"] == "GMW000000012345" and rows[1]["statusQualityControl"] == "afgekeurd"
    assert (
        rows[0]["value"] == "36.337"
        and rows[0]["unit"] == "m NAP"
        and rows[0]["validationStatus"] == "volledigBeoordeeld"
    )


def test_homes_file_errors_say_where() -> None:
    with pytest.raises(RegistryError, match=r"\[\[home\]\] 1 \(a\): at least one \[\[home.calibration\]\]"):
        parse(
            {
                "home": [
                    {
                        "id": "a",
                        "owner": "o",
                        "buurtcode": "BU1",
                        "floor_nap": 1.0,
                        "crawlspace_floor_nap": 0.5,
                        "location": [6.9, 52.2],
                        "sensor": {"kind": "distance", "device_id": "d"},
                    }
                ]
            }
        )
