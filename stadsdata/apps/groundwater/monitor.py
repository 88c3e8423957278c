"""One run of the groundwater app over a platform: derive levels, recompute after calibration changes,
alert, and check sensor health. ``stadsdata groundwater alerts run`` calls ``run`` (from cron or a
systemd timer, every few minutes); it goes on from where the previous run stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stadsdata.apps.groundwater import health, levels
from stadsdata.apps.groundwater.alerts import AlertEvent, HomeState, Notifier, State, deliver, evaluate
from stadsdata.apps.groundwater.levels import Barometer, Level, Reading
from stadsdata.apps.groundwater.platform import Platform
from stadsdata.apps.groundwater.registry import Registry, Stored, store

PA_PER_UNIT = {"hPa": 100.0, "Pa": 1.0, "bar": 100_000.0}


@dataclass
class Report:
    derived: int = 0
    recomputed: dict[str, datetime] = field(default_factory=dict)
    events: list[AlertEvent] = field(default_factory=list)
    issues: list[health.Issue] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def derive_levels(platform: Platform, registry: Registry, s: Stored) -> tuple[int, datetime | None]:
    """Convert the raw readings not yet converted (or all from a calibration change on) into the level and depth
    Datastreams; returns how many, and from when levels were recomputed."""
    home = s.home
    redo = levels.recompute_from(s.previous, home.calibrations) if s.previous else None
    if redo is not None:
        if home.kind != "level":
            platform.delete_observations(s.datastreams["level"], redo)
        platform.delete_observations(s.datastreams["depth"], redo)
    newest = platform.latest(s.datastreams["depth" if home.kind == "level" else "level"])
    after = newest[0] if newest else None
    raw = [
        Reading(t, float(v))
        for t, v in platform.observations(s.datastreams["raw"], after=after)
        if isinstance(v, int | float)
    ]
    if not raw:
        return 0, redo
    baro = None
    if home.kind == "pressure" and any(c.absolute for c in home.calibrations):
        if registry.barometer is None:
            raise levels.CalibrationError("absolute pressure sensors need a barometer Datastream in the homes file")
        unit = PA_PER_UNIT[registry.barometer_unit]
        margin = timedelta(hours=3)
        air = platform.observations(registry.barometer, raw[0].time - margin, raw[-1].time + margin)
        baro = Barometer(Reading(t, float(v) * unit) for t, v in air if isinstance(v, int | float))
    derived = levels.derive(raw, home.calibrations, baro)
    # a reading the barometer has not caught up with yet waits for the next run, and so does everything after it
    if baro is not None and derived:
        usable = {d.time for d in derived}
        for r in raw:
            if r.time not in usable and r.time >= derived[-1].time - timedelta(hours=3):
                derived = [d for d in derived if d.time < r.time]
                break
    if home.kind != "level":
        platform.add_observations(
            s.datastreams["level"],
            ((d.time, d.level_nap, {"air_pa": d.air_pa} if d.air_pa is not None else None) for d in derived),
        )
    platform.add_observations(s.datastreams["depth"], ((d.time, d.depth, None) for d in derived))
    return len(derived), redo


def level_series(platform: Platform, s: Stored, after: datetime | None) -> list[Level]:
    lv = dict(platform.observations(s.datastreams["level"], after=after))
    dp = dict(platform.observations(s.datastreams["depth"], after=after))
    return [Level(t, float(lv[t]), float(dp[t])) for t in sorted(lv) if t in dp]


def run(
    platform: Platform,
    registry: Registry,
    state_path: Path,
    notifiers: Sequence[Notifier],
    now: datetime | None = None,
) -> Report:
    now = now or datetime.now(UTC)
    state = State.load(state_path)
    report = Report()
    stored = [store(platform, h) for h in registry.homes]
    series: dict[str, list[tuple[datetime, float]]] = {}
    for s in stored:
        n, redo = derive_levels(platform, registry, s)
        report.derived += n
        if redo is not None:
            report.recomputed[s.home.id] = redo
        hs = state.homes.setdefault(s.home.id, HomeState())
        look_back = timedelta(hours=s.home.alert.trend_hours + 1)
        since = datetime.fromisoformat(hs.last) - look_back if hs.last else None
        if redo is not None and hs.last and redo <= datetime.fromisoformat(hs.last):
            since = redo - look_back  # levels changed under already evaluated readings: evaluate them again
            hs.last = (redo - timedelta(microseconds=1)).isoformat()
        report.events += evaluate(s.home, level_series(platform, s, since), hs)
        recent = platform.observations(s.datastreams["level"], after=now - timedelta(days=health.DRIFT_DAYS + 1))
        series[s.home.id] = [(t, float(v)) for t, v in recent]
        last_raw = platform.latest(s.datastreams["raw"])
        bat = platform.latest(s.datastreams["battery"])
        for issue in (
            health.missing(s.home.id, last_raw[0] if last_raw else None, s.home.interval_s, now),
            health.battery(s.home.id, float(bat[1]) if bat else None, s.home.battery_field.endswith("_pct")),
            health.flatline(s.home.id, series[s.home.id], now),
        ):
            if issue is not None:
                report.issues.append(issue)
    for s in stored:
        same = {o.home.id: series[o.home.id] for o in stored if o is not s and o.home.buurtcode == s.home.buurtcode}
        neighbours = same if len(same) >= 2 else {o.home.id: series[o.home.id] for o in stored if o is not s}
        issue = health.drift(s.home.id, series[s.home.id], neighbours, now)
        if issue is not None:
            report.issues.append(issue)
    report.problems = deliver(report.events, notifiers, state, lambda: state.save(state_path))
    state.save(state_path)
    return report
