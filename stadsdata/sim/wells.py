"""Groundwater wells in residents' homes (crawlspace wells with a LoRaWAN pressure probe).

The model, per home:

* **Recharge** is the day's real precipitation minus 0.9 × the real Makkink evaporation at Twenthe
  (``weather``), less its long-term mean, so that the level wanders around the home's mean depth.
* **Level** = mean level + a fast response (recharge of the last days through a gamma-shaped kernel
  that peaks 1-4 days after the rain: water needs time to reach the groundwater) + a slow response
  (the mean recharge of the last months, which gives the seasons: high in late winter, low in late
  summer). Values between two days are interpolated, plus 3 mm of sensor noise.
* The crawlspace floor is 0.6 m below the floor; the groundwater app (``stadsdata.apps.groundwater``)
  takes the wells as its homes (``apps/groundwater/sim.py``) and alerts when the water comes within
  0.20 m of it.
* The probe hangs 2.2 m below the floor and reports the **water column above it** in cm
  (``Water_deep_cm``, as a Dragino PS-LB does), and its battery voltage (``Bat_V``). The ingest
  mapping turns the column into metres above NAP (Dutch ordnance datum) with the probe's height.

Two sensors have a story: one **drifts** (its reading creeps up 6 mm a day for the last 40 days
while the water does not: a fouled pressure membrane), and one's **battery dies** (its voltage sinks
over three weeks and it falls silent 36 hours before the demo's start). About 2 % of all uplinks are
lost on the way (no gateway heard them), which leaves small gaps.

Invented: the homes (random points in real neighbourhoods), floor heights, depths, gains and lags.
"""

from __future__ import annotations

import math

from stadsdata.sim import weather
from stadsdata.sim.base import DAY, Phenomenon, Simulator, Station, Stream, Unit, normal, uniform
from stadsdata.sim.places import buurtcode, point_in

INTERVAL = 900
PROBE_DEPTH = 2.2
"""Metres from floor level down to the probe."""
CRAWLSPACE_HEIGHT = 0.6
"""Metres from floor level down to the crawlspace floor (Dutch crawlspaces are 0.4-0.8 m high)."""
NEIGHBOURHOODS = (
    # (buurt, floor level in m NAP (invented, of the order of Enschede's ground), homes)
    ("Roombeek-Roomveldje", 38.4, 4),
    ("Pathmos", 35.9, 4),
    ("Deppenbroek", 40.8, 4),
)
LEVEL = Phenomenon(
    "Groundwater level",
    "https://www.wikidata.org/wiki/Q161598",
    "Level of the groundwater in metres above NAP (Normaal Amsterdams Peil)",
)
VOLTAGE = Phenomenon(
    "Battery voltage",
    "https://www.wikidata.org/wiki/Q25428",
    "Voltage of the sensor's battery; a lithium cell is empty below about 3.0 V",
)
METRE_NAP = Unit("metre above NAP", "m NAP", "http://www.opengis.net/def/uom/UCUM/0/m")
VOLT = Unit("volt", "V", "http://www.opengis.net/def/uom/UCUM/0/V")
KERNEL_DAYS = 150
SLOW_DAYS = 45.0
DRIFT_DAYS = 40
DRIFT_PER_DAY = 0.006
DIES_BEFORE_ANCHOR = 36 * 3600
DYING_DAYS = 21
LOSS = 0.02
"""The share of uplinks that no gateway hears (a crawlspace is a poor place for a radio)."""


class Wells(Simulator):
    domain = "groundwater"

    def __init__(self, seed: int, anchor: int) -> None:
        super().__init__(seed, anchor)
        self.mean_recharge = weather.mean_recharge()
        homes: list[Station] = []
        self.params: dict[str, tuple[float, float, float, float, float]] = {}
        for buurt, floor, n in NEIGHBOURHOODS:
            code = buurtcode(buurt)
            for i in range(1, n + 1):
                key = f"ps-lb-{code[-4:]}-{i}"
                lon, lat = point_in(buurt, seed, key)
                floor_nap = round(floor + 0.4 * normal(seed, key, "floor"), 2)
                depth = 0.9 + 0.5 * (normal(seed, key, "depth") * 0.5 + 0.5)  # mean depth below the floor
                lag = 1.0 + 3.0 * (normal(seed, key, "lag") * 0.3 + 0.5)
                fast = 0.012 + 0.004 * normal(seed, key, "fast")
                slow = 0.25 + 0.05 * normal(seed, key, "slow")
                probe = round(floor_nap - PROBE_DEPTH, 3)
                self.params[key] = (floor_nap, floor_nap - depth, max(0.8, lag), max(0.004, fast), slow)
                column = Stream("Water_deep_cm", "groundwater level", LEVEL, METRE_NAP, convert="cm-to-m", offset=probe)
                homes.append(
                    Station(
                        key=key,
                        name=f"Groundwater well {buurt} {i}",
                        description=f"Crawlspace well in a home in {buurt}, with a pressure probe at {probe} m NAP "
                        "(simulated)",
                        lon=lon,
                        lat=lat,
                        place=f"Home in {buurt}",
                        sensor="Dragino PS-LB with submersible pressure probe",
                        interval=INTERVAL,
                        streams=(column, Stream("Bat_V", "battery voltage", VOLTAGE, VOLT)),
                        properties={
                            "domain": self.domain,
                            "neighbourhood": buurt,
                            "buurtcode": code,
                            "owner": f"Resident in {buurt} (groundwater project)",
                            "licence": "CC-BY-4.0",
                            "floor_level_m_nap": floor_nap,
                            "crawlspace_floor_m_nap": round(floor_nap - CRAWLSPACE_HEIGHT, 2),
                            "probe_level_m_nap": probe,
                            "network": "The Things Network",
                        },
                        transport="ttn",
                        phase=self.phase(key, INTERVAL),
                    )
                )
        self.stations = tuple(homes)
        self.drifting = homes[5].key  # Pathmos 2
        self.dying = homes[9].key  # Deppenbroek 2
        self.dies_at = anchor - DIES_BEFORE_ANCHOR
        self._levels: dict[tuple[str, int], float] = {}

    def _daily(self, key: str, day: int) -> float:
        """The level of home ``key`` at the start of ``day`` (days since 1970), m NAP, before noise and drift."""
        found = self._levels.get((key, day))
        if found is not None:
            return found
        _, mean, lag, fast, slow = self.params[key]
        quick = 0.0
        seasonal = 0.0
        norm = 0.0
        for k in range(1, KERNEL_DAYS):
            d = weather.weather(weather.day_of((day - k) * DAY))
            recharge = d.precip_mm - 0.9 * d.evap_mm - self.mean_recharge
            x = k / lag
            quick += recharge * x * math.exp(-x) / lag  # gamma kernel, shape 2: peaks at k = lag
            w = math.exp(-k / SLOW_DAYS)
            seasonal += recharge * w
            norm += w
        found = self._levels[key, day] = mean + fast * quick + slow * seasonal / norm
        return found

    def level(self, station: Station, t: int) -> float:
        """The true groundwater level at the home (m NAP)."""
        day, f = divmod(t, DAY)
        a, b = self._daily(station.key, day), self._daily(station.key, day + 1)
        floor_nap = self.params[station.key][0]
        return min(floor_nap - 0.05, a + (b - a) * f / DAY)  # above the floor it would run off

    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        if station.key == self.dying and t > self.dies_at:
            return None
        if uniform(self.seed, station.key, "lost", t) < LOSS:
            return None  # the uplink did not reach a gateway
        level = self.level(station, t) + 0.003 * normal(self.seed, station.key, "noise", t)
        if station.key == self.drifting:
            level += DRIFT_PER_DAY * max(0.0, (t - (self.anchor - DRIFT_DAYS * DAY)) / DAY)
        probe = float(station.properties["probe_level_m_nap"])
        column_cm = max(0.0, round((level - probe) * 100, 1))
        age_days = (t - (self.anchor - 400 * DAY)) / DAY
        volts = 3.62 - 0.0003 * age_days + 0.004 * normal(self.seed, station.key, "bat", t)
        if station.key == self.dying:
            left = (self.dies_at - t) / (DYING_DAYS * DAY)  # 1 three weeks before it dies, 0 when it does
            volts = 3.02 + 0.38 * min(1.0, max(0.0, left)) ** 0.5 + 0.004 * normal(self.seed, station.key, "bat", t)
        return {"Water_deep_cm": column_cm, "Bat_V": round(volts, 3)}
