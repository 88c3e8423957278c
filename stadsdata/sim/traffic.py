"""Traffic lights that detect cyclists (loop or radar detectors in the cycle lanes), counted per 5 minutes.

The expected count follows commuting and school peaks on weekdays (about 7:45-8:30 and 16:30-17:30;
the crossings on the routes to the university and the station are busiest), a flatter leisure day
on weekends, and a quarter fewer cyclists on rainy days (the real Twenthe precipitation of the
replayed day). Counts are drawn around it (Poisson).

Invented: the intersections' detectors (real streets; not the city's real installations), volumes and profiles.
"""

from __future__ import annotations

from stadsdata.sim import weather
from stadsdata.sim.base import COUNT, Phenomenon, Simulator, Station, Stream, Unit, poisson
from stadsdata.sim.rhythm import hour_of, interpolate, local

INTERVAL = 300
CYCLISTS = Phenomenon(
    "Cyclists detected",
    "https://www.wikidata.org/wiki/Q2125610",
    "Number of cyclists the traffic light's detectors registered in the reporting interval (5 minutes)",
)
PER_5_MIN = Unit("cyclists per 5 minutes", "{cyclists}/5min", "http://www.opengis.net/def/uom/UCUM/0/1")
CROSSINGS = (
    # (key, intersection, lon, lat, cyclists on a weekday)
    ("hengelosestraat-ariensplein", "Hengelosestraat / Ariënsplein", 6.88430, 52.22430, 5200),
    ("hengelosestraat-kuipersdijk", "Hengelosestraat / Kuipersdijk", 6.87480, 52.22920, 4300),
    ("de-ruyterlaan-stationsplein", "De Ruyterlaan / Stationsplein", 6.89180, 52.22390, 6100),
    ("haaksbergerstraat-zuiderval", "Haaksbergerstraat / Zuiderval", 6.88540, 52.21290, 3400),
)
WEEKDAY_SHARE = (
    0.002, 0.001, 0.001, 0.001, 0.002, 0.008, 0.03, 0.09, 0.11, 0.06, 0.045, 0.045,
    0.055, 0.055, 0.05, 0.06, 0.085, 0.1, 0.07, 0.045, 0.035, 0.025, 0.015, 0.008,
)  # fmt: skip
WEEKEND_SHARE = (
    0.008, 0.005, 0.003, 0.002, 0.002, 0.002, 0.005, 0.015, 0.03, 0.05, 0.07, 0.085,
    0.095, 0.1, 0.1, 0.1, 0.09, 0.075, 0.06, 0.04, 0.03, 0.02, 0.015, 0.01,
)  # fmt: skip


class TrafficLights(Simulator):
    domain = "cycling"

    def __init__(self, seed: int, anchor: int) -> None:
        super().__init__(seed, anchor)
        self.volume: dict[str, float] = {}
        stations = []
        for key, crossing, lon, lat, volume in CROSSINGS:
            device = f"tlc-{key}"
            self.volume[device] = volume
            stations.append(
                Station(
                    key=device,
                    name=f"Traffic light {crossing}",
                    description=f"Traffic light controller at {crossing}, cyclist detection on the cycle lanes "
                    "(simulated)",
                    lon=lon,
                    lat=lat,
                    place=crossing,
                    sensor="Traffic light controller with cyclist detectors",
                    interval=INTERVAL,
                    streams=(Stream("cyclists", "cyclists detected", CYCLISTS, PER_5_MIN, COUNT),),
                    properties={
                        "domain": self.domain,
                        "owner": "Gemeente Enschede, traffic management",
                        "licence": "CC0-1.0",
                    },
                    phase=self.phase(device, INTERVAL),
                )
            )
        self.stations = tuple(stations)

    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        weekday = local(t).weekday()
        hour = hour_of(t - INTERVAL / 2)
        if weekday < 5:
            mean = self.volume[station.key] * interpolate(WEEKDAY_SHARE, hour)
        else:
            mean = self.volume[station.key] * 0.6 * interpolate(WEEKEND_SHARE, hour)
        rain = weather.weather(weather.day_of(t)).precip_mm
        mean *= (1 - min(0.25, rain / 30)) / 12
        return {"cyclists": poisson(self.seed, mean, station.key, t)}
