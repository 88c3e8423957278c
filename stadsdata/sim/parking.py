"""Parking garages in and around the city centre: occupied spaces out of a known capacity.

Each garage reports its occupied spaces every 5 minutes. Occupancy follows the shopping day
(filling from 9:00, fullest around 14:00-15:00, emptying in the evening; Saturdays fullest, Sunday
afternoons moderate), commuters in the garage by the station on weekdays, a slowly wandering
deviation from the usual (a few % of capacity), and the Saturday event (rhythm.event_window), when
the garages near the Oude Markt fill up and empty in the hours after it. A full garage stays at its capacity.

Invented: the garages (names of real squares and streets), capacities and profiles.
"""

from __future__ import annotations

import math

from stadsdata.sim.base import COUNT, Phenomenon, Simulator, Station, Stream, Unit, smooth
from stadsdata.sim.rhythm import event_window, hour_of, interpolate, local

INTERVAL = 300
OCCUPIED = Phenomenon(
    "Occupied parking spaces",
    "https://www.wikidata.org/wiki/Q6501349",
    "Number of parking spaces taken in the garage; the Thing's properties give its capacity",
)
SPACES = Unit("parking spaces", "{spaces}", "http://www.opengis.net/def/uom/UCUM/0/1")
GARAGES = (
    # (key, name, lon, lat, capacity, how full on a busy Saturday (fraction), commuters (fraction))
    ("van-heekplein", "Van Heekplein", 6.89110, 52.21830, 760, 1.0, 0.05),
    ("irenestraat", "Irenestraat", 6.89740, 52.21780, 520, 0.85, 0.1),
    ("stationsplein", "Stationsplein", 6.88930, 52.22330, 650, 0.7, 0.45),
    ("oldenzaalsestraat", "Oldenzaalsestraat", 6.90120, 52.22390, 410, 0.8, 0.15),
    ("zuiderval", "Zuiderval", 6.88620, 52.21420, 380, 0.55, 0.2),
)
WEEKDAY = (0.6, 0.65, 0.65, 0.75, 0.85, 1.0, 0.55)
SHOPPERS = (
    0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.15, 0.35, 0.6, 0.8,
    0.92, 0.98, 1.0, 0.95, 0.82, 0.6, 0.4, 0.3, 0.25, 0.2, 0.12, 0.05,
)  # fmt: skip
SUNDAY = (
    0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.1, 0.3,
    0.55, 0.75, 0.8, 0.8, 0.7, 0.4, 0.15, 0.1, 0.08, 0.06, 0.04, 0.02,
)  # fmt: skip
COMMUTERS = (
    0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.3, 0.75, 0.95, 1.0, 1.0, 1.0,
    1.0, 1.0, 1.0, 0.95, 0.8, 0.5, 0.25, 0.1, 0.05, 0.03, 0.02, 0.02,
)  # fmt: skip


class Parking(Simulator):
    domain = "parking"

    def __init__(self, seed: int, anchor: int) -> None:
        super().__init__(seed, anchor)
        self.event = event_window(anchor)
        self.shape: dict[str, tuple[int, float, float]] = {}
        stations = []
        for key, name, lon, lat, capacity, busy, commuters in GARAGES:
            device = f"garage-{key}"
            self.shape[device] = (capacity, busy, commuters)
            stations.append(
                Station(
                    key=device,
                    name=f"Parking garage {name}",
                    description=f"Parking garage {name}, {capacity} spaces; occupancy from its entry and exit "
                    "counts (simulated)",
                    lon=lon,
                    lat=lat,
                    place=name,
                    sensor="Garage entry/exit counting system",
                    interval=INTERVAL,
                    streams=(Stream("occupied", "occupied spaces", OCCUPIED, SPACES, COUNT),),
                    properties={
                        "domain": self.domain,
                        "neighbourhood": "City",
                        "capacity": capacity,
                        "owner": "Gemeente Enschede, parking",
                        "licence": "CC0-1.0",
                    },
                    phase=self.phase(device, INTERVAL),
                )
            )
        self.stations = tuple(stations)

    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        capacity, busy, commuters = self.shape[station.key]
        hour = hour_of(t)
        weekday = local(t).weekday()
        shoppers = interpolate(SUNDAY if weekday == 6 else SHOPPERS, hour) * WEEKDAY[weekday] * busy
        working = interpolate(COMMUTERS, hour) * commuters if weekday < 5 else 0.0
        fraction = shoppers * (1 - commuters) + working + 0.04 * smooth(self.seed, station.key, t, 5400)
        if station.key in ("garage-van-heekplein", "garage-irenestraat"):
            start, end = self.event
            if start <= t < end:  # full from the event's start to its end ...
                fraction = max(fraction, 0.97 + 0.03 * smooth(self.seed, station.key + "/event", t, 1800))
            elif end <= t < end + 4 * 3600:  # ... then emptying within an hour or two
                fraction = max(fraction, 0.97 * math.exp(-(t - end) / 2700))
        return {"occupied": max(0, min(capacity, round(capacity * fraction)))}
