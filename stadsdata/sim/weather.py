"""The weather the simulated city has: a replay of real daily weather at KNMI station 290 Twenthe.

A simulated day takes the measured weather of the same calendar day in one of the years 2004-2013
(``data/SOURCE.md``), so that rain, dry spells and seasons come in real sequences and amounts.
Hours within a day are shaped from the day's values (see ``temperature`` and ``humidity``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from stadsdata.sim.base import DAY

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
FIRST_YEAR = 2004
YEARS = 10


@dataclass(frozen=True)
class Day:
    """The weather of one day at Twenthe."""

    precip_mm: float
    evap_mm: float
    temp_mean: float
    temp_min: float
    temp_max: float
    humidity: float


@cache
def _table() -> dict[date, Day]:
    text = resources.files("stadsdata.sim").joinpath("data/knmi_290_daily_2004-2013.csv").read_text("utf-8")
    days: dict[date, Day] = {}
    for row in csv.DictReader(io.StringIO(text)):
        days[date.fromisoformat(row["date"])] = Day(
            float(row["precip_mm"]),
            float(row["evap_makkink_mm"]),
            float(row["temp_mean_c"]),
            float(row["temp_min_c"]),
            float(row["temp_max_c"]),
            float(row["rel_humidity_pct"]),
        )
    return days


def reference_day(day: date) -> date:
    """The real day whose weather the simulated ``day`` replays."""
    year = FIRST_YEAR + (day.year - FIRST_YEAR) % YEARS
    if day.month == 2 and day.day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return date(year, 2, 28)
    return date(year, day.month, day.day)


@cache
def weather(day: date) -> Day:
    """The weather of the simulated ``day`` (a UT day, as KNMI counts them)."""
    return _table()[reference_day(day)]


def day_of(t: float) -> date:
    return date(1970, 1, 1) + timedelta(days=int(t // DAY))


def mean_recharge() -> float:
    """The mean of precipitation minus evaporation over the replayed years, in mm per day."""
    days = _table().values()
    return sum(d.precip_mm - d.evap_mm for d in days) / len(days)


def temperature(t: float) -> float:
    """Air temperature at ``t`` (°C): the day's minimum around 05:00 and maximum around 15:00 local time,
    joined by a cosine, and the next day's minimum after the evening."""
    local = datetime.fromtimestamp(t, AMSTERDAM)
    hour = local.hour + local.minute / 60
    today = weather(day_of(t))
    if hour < 5:
        before = weather(day_of(t - DAY))
        return _between(before.temp_max, today.temp_min, (hour + 9) / 14)
    if hour < 15:
        return _between(today.temp_min, today.temp_max, (hour - 5) / 10)
    after = weather(day_of(t + DAY))
    return _between(today.temp_max, after.temp_min, (hour - 15) / 14)


def _between(a: float, b: float, f: float) -> float:
    return a + (b - a) * (1 - math.cos(math.pi * f)) / 2


def humidity(t: float) -> float:
    """Relative humidity at ``t`` (%): the day's mean, higher at night and lower in the afternoon as the
    temperature swings (by about 3 % per °C from the day's mean), within 25-100 %."""
    day = weather(day_of(t))
    rh = day.humidity - 3.0 * (temperature(t) - day.temp_mean)
    return min(100.0, max(25.0, rh))
