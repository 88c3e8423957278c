"""Local time and the city's rhythms: what hour and weekday it is in Enschede, and the story's event."""

from __future__ import annotations

from datetime import datetime, timedelta

from stadsdata.sim.weather import AMSTERDAM


def local(t: float) -> datetime:
    return datetime.fromtimestamp(t, AMSTERDAM)


def hour_of(t: float) -> float:
    """The local hour of day as a number (14.5 is half past two)."""
    d = local(t)
    return d.hour + d.minute / 60 + d.second / 3600


def interpolate(profile: tuple[float, ...], hour: float) -> float:
    """A 24-value hourly profile (values at the hour's start) linearly interpolated at ``hour``."""
    i = int(hour) % 24
    f = hour - int(hour)
    return profile[i] * (1 - f) + profile[(i + 1) % 24] * f


def event_window(anchor: int) -> tuple[int, int]:
    """The story's city-centre event: the last Saturday at least a day before the demo's start, 14:00-24:00."""
    day = local(anchor - 86_400).date()
    while day.weekday() != 5:
        day -= timedelta(days=1)
    start = datetime(day.year, day.month, day.day, 14, tzinfo=AMSTERDAM)
    return int(start.timestamp()), int((start + timedelta(hours=10)).timestamp())
