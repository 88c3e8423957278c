"""Passer-by counters in the city centre (counting cameras or Wi-Fi sensors on façades).

Each counter reports the number of people who passed in the last 5 minutes. The expected count is
the spot's daily volume × the weekday's factor × the hour's share of the day (shops from 9 or 10,
busiest in the early afternoon; Saturdays busiest, Sunday afternoon shopping, nightlife around the
Oude Markt on Friday and Saturday night), less up to a quarter on rainy days (the real Twenthe
precipitation of the replayed day). Counts are drawn around that expectation (Poisson).

The story: an event on the Oude Markt on the last Saturday before the demo's start (14:00-24:00)
triples the crowd there and raises it in the streets around.

Invented: the counters, their places (real streets), volumes and profiles.
"""

from __future__ import annotations

from stadsdata.sim import weather
from stadsdata.sim.base import COUNT, Phenomenon, Simulator, Station, Stream, Unit, poisson
from stadsdata.sim.rhythm import event_window, hour_of, interpolate, local

INTERVAL = 300
PASSERS = Phenomenon(
    "Passers-by",
    "https://www.wikidata.org/wiki/Q7163",
    "Number of people passing the counting line in the reporting interval (5 minutes)",
)
PEOPLE = Unit("people per 5 minutes", "{people}/5min", "http://www.opengis.net/def/uom/UCUM/0/1")
SPOTS = (
    # (key, street, lon, lat, people on an ordinary Thursday, event factor)
    ("oude-markt", "Oude Markt", 6.89540, 52.22185, 9000, 3.0),
    ("langestraat", "Langestraat", 6.89395, 52.22120, 14000, 1.8),
    ("kalanderstraat", "Kalanderstraat", 6.89280, 52.22040, 18000, 1.3),
    ("haverstraat", "Haverstraatpassage", 6.89600, 52.21960, 11000, 1.8),
    ("van-heekplein", "Van Heekplein", 6.89150, 52.21890, 16000, 1.3),
    ("stationsplein", "Stationsplein", 6.89050, 52.22250, 12000, 1.1),
)
WEEKDAY = (0.8, 0.9, 0.9, 1.0, 1.1, 1.45, 0.55)
# Share of the day's passers-by per hour (sums to about 1), shops, and a separate night profile.
SHOPPING = (
    0.002, 0.001, 0.001, 0.001, 0.002, 0.005, 0.012, 0.025, 0.035, 0.05, 0.07, 0.085,
    0.095, 0.1, 0.1, 0.095, 0.085, 0.07, 0.05, 0.035, 0.03, 0.025, 0.015, 0.007,
)  # fmt: skip
SUNDAY = (
    0.004, 0.002, 0.001, 0.001, 0.001, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.06,
    0.1, 0.13, 0.14, 0.14, 0.13, 0.1, 0.05, 0.03, 0.025, 0.02, 0.01, 0.006,
)  # fmt: skip
NIGHTLIFE = (
    0.06, 0.05, 0.03, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.03, 0.05, 0.06,
)  # fmt: skip


class Counters(Simulator):
    domain = "passers-by"

    def __init__(self, seed: int, anchor: int) -> None:
        super().__init__(seed, anchor)
        self.event = event_window(anchor)
        self.volume: dict[str, tuple[float, float]] = {}
        stations = []
        for key, street, lon, lat, volume, factor in SPOTS:
            device = f"counter-{key}"
            self.volume[device] = (volume, factor)
            stations.append(
                Station(
                    key=device,
                    name=f"Passer-by counter {street}",
                    description=f"Counts people passing in {street}, city centre (simulated)",
                    lon=lon,
                    lat=lat,
                    place=street,
                    sensor="Passer-by counting camera (anonymous line crossing)",
                    interval=INTERVAL,
                    streams=(Stream("passers", "passers-by", PASSERS, PEOPLE, COUNT),),
                    properties={
                        "domain": self.domain,
                        "neighbourhood": "City",
                        "owner": "Gemeente Enschede, city centre management",
                        "licence": "CC0-1.0",
                    },
                    phase=self.phase(device, INTERVAL),
                )
            )
        self.stations = tuple(stations)

    def expected(self, station: Station, t: int) -> float:
        volume, factor = self.volume[station.key]
        day = local(t)
        hour = hour_of(t - INTERVAL / 2)
        weekday = day.weekday()
        share = interpolate(SUNDAY if weekday == 6 else SHOPPING, hour)
        if weekday in (4, 5) or (weekday == 6 and hour < 4):
            night = interpolate(NIGHTLIFE, hour) * (2.0 if station.key == "counter-oude-markt" else 0.5)
            share += night
        rain = weather.weather(weather.day_of(t)).precip_mm
        mean = volume * WEEKDAY[weekday] * share / 12 * (1 - min(0.25, rain / 40))
        if self.event[0] <= t < self.event[1]:
            mean *= factor
        return mean

    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        return {"passers": poisson(self.seed, self.expected(station, t), station.key, t)}
