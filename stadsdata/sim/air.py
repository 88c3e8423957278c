"""Air-quality sensors on lamp posts: PM2.5, NO2, temperature and relative humidity every 10 minutes.

* **Temperature** and **humidity** follow the real day at Twenthe (``weather``: the day's minimum,
  maximum and mean humidity shaped over the hours), plus a street's urban warmth and sensor noise.
* **PM2.5**: a regional background that wanders over days and is shared by all posts (dust moves
  with the weather, not with the street), higher in cold weather, washed out on rainy days, plus
  wood stoves in the evening in residential streets when it is cold, and a little from traffic.
* **NO2**: a regional background plus traffic: rush hours at 8:00 and 17:00 on weekdays, less on
  weekends, scaled by how busy the street is.

Invented: the posts and their placement, the street factors and all the air-quality magnitudes
(they are of the order low-cost sensors measure in Dutch cities; they are not measurements).
"""

from __future__ import annotations

from stadsdata.sim import weather
from stadsdata.sim.base import Phenomenon, Simulator, Station, Stream, Unit, normal, smooth
from stadsdata.sim.places import buurtcode, point_in
from stadsdata.sim.rhythm import hour_of, interpolate, local

INTERVAL = 600
PM25 = Phenomenon("PM2.5", "https://www.wikidata.org/wiki/Q48035511", "Mass concentration of particulate matter "
                  "smaller than 2.5 µm")  # fmt: skip
NO2 = Phenomenon("NO2", "https://www.wikidata.org/wiki/Q207843", "Mass concentration of nitrogen dioxide")
TEMPERATURE = Phenomenon("Air temperature", "https://www.wikidata.org/wiki/Q11466", "Air temperature at 4 m")
HUMIDITY = Phenomenon("Relative humidity", "https://www.wikidata.org/wiki/Q2499617", "Relative humidity of the air")
UG_M3 = Unit("microgram per cubic metre", "µg/m³", "http://www.opengis.net/def/uom/UCUM/0/ug/m3")
CELSIUS = Unit("degree Celsius", "°C", "http://www.opengis.net/def/uom/UCUM/0/Cel")
PERCENT = Unit("percent", "%", "http://www.opengis.net/def/uom/UCUM/0/%25")
POSTS = (
    # (buurt, street kind, traffic (0-1), urban warmth (°C))
    ("City", "inner city square", 0.5, 1.0),
    ("De Laares", "arterial road", 1.0, 0.7),
    ("Roombeek-Roomveldje", "residential street", 0.2, 0.5),
    ("Twekkelerveld", "residential street", 0.3, 0.4),
    ("Wesselerbrink Noord-Oost", "residential street", 0.25, 0.4),
    ("Drienerveld-U.T.", "campus road", 0.4, 0.2),
)
RUSH = (
    0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.65, 0.95, 1.0, 0.75, 0.6, 0.6,
    0.6, 0.6, 0.65, 0.75, 0.95, 1.0, 0.8, 0.55, 0.4, 0.3, 0.2, 0.15,
)  # fmt: skip


class AirQuality(Simulator):
    domain = "air-quality"

    def __init__(self, seed: int, anchor: int) -> None:
        super().__init__(seed, anchor)
        self.street: dict[str, tuple[float, float, bool]] = {}
        stations = []
        for i, (buurt, kind, traffic, warmth) in enumerate(POSTS, 1):
            code = buurtcode(buurt)
            key = f"lamppost-{code[-4:]}"
            lon, lat = point_in(buurt, seed, key)
            self.street[key] = (traffic, warmth, kind == "residential street")
            stations.append(
                Station(
                    key=key,
                    name=f"Air quality lamp post {buurt}",
                    description=f"Air-quality sensor on a lamp post, {kind} in {buurt} (simulated)",
                    lon=lon,
                    lat=lat,
                    place=f"Lamp post {i}, {buurt}",
                    sensor="Low-cost air-quality sensor (optical PM, electrochemical NO2)",
                    interval=INTERVAL,
                    streams=(
                        Stream("pm25", "PM2.5", PM25, UG_M3),
                        Stream("no2", "NO2", NO2, UG_M3),
                        Stream("temperature", "air temperature", TEMPERATURE, CELSIUS),
                        Stream("humidity", "relative humidity", HUMIDITY, PERCENT),
                    ),
                    properties={
                        "domain": self.domain,
                        "neighbourhood": buurt,
                        "buurtcode": code,
                        "owner": "Gemeente Enschede, environment",
                        "licence": "CC-BY-4.0",
                    },
                    phase=self.phase(key, INTERVAL),
                )
            )
        self.stations = tuple(stations)

    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        traffic, warmth, residential = self.street[station.key]
        key = station.key
        day = weather.weather(weather.day_of(t))
        temp = weather.temperature(t)
        hour = hour_of(t)
        weekday = local(t).weekday()
        cold = max(0.0, 10.0 - temp)
        wash = 0.7 if day.precip_mm > 2 else 1.0
        rush = interpolate(RUSH, hour) * (0.6 if weekday >= 5 else 1.0)
        background = max(2.0, 8.0 + 4.0 * smooth(self.seed, "pm-region", t, 36 * 3600) + 0.35 * cold) * wash
        evening = 1.0 if 17 <= hour < 23 else 0.3 if hour >= 23 or hour < 1 else 0.0
        stoves = 0.6 * cold * evening if residential else 0.15 * cold * evening
        pm25 = background + stoves + 2.0 * traffic * rush + 1.2 * normal(self.seed, key, "pm", t)
        no2 = (
            max(4.0, 14.0 + 5.0 * smooth(self.seed, "no2-region", t, 24 * 3600)) * wash
            + 28.0 * traffic * rush
            + 2.0 * normal(self.seed, key, "no2", t)
        )
        return {
            "pm25": round(max(0.5, pm25), 1),
            "no2": round(max(1.0, no2), 1),
            "temperature": round(temp + warmth + 0.15 * normal(self.seed, key, "t", t), 2),
            "humidity": round(
                min(100.0, max(20.0, weather.humidity(t) - 2 * warmth + 1.2 * normal(self.seed, key, "rh", t))), 1
            ),
        }
