"""A deterministic fixture city for query tests, built through the HTTP API.

Enschede: groundwater wells, air-quality boxes and bike counters in a few
neighbourhoods. Everything is defined here as plain Python data (``THINGS``,
``LOCATIONS``, ``DATASTREAMS`` and the observations from ``observation_defs()``),
so that tests can compute what a query must return from the definition, and
then ``build_city`` creates it with POST (deep insert), single Observation
POSTs and ``POST /v1.1/CreateObservations``, and resolves the ids by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

BASE = "/v1.1"
UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)

MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
CATEGORY = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation"
TRUTH = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation"
COUNT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation"
GENERIC = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation"

UNIT_M = {"name": "metre", "symbol": "m", "definition": "http://qudt.org/vocab/unit/M"}
UNIT_PM = {
    "name": "microgram per cubic metre",
    "symbol": "µg/m³",
    "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3",
}
UNIT_NONE = {"name": "none", "symbol": "", "definition": "http://qudt.org/vocab/unit/UNITLESS"}
UNIT_CELSIUS = {"name": "degree Celsius", "symbol": "°C", "definition": "http://qudt.org/vocab/unit/DEG_C"}
UNIT_BIKES = {"name": "bicycles", "symbol": "bikes", "definition": "http://qudt.org/vocab/unit/NUM"}


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y]}


# The polygon of the "Roombeek grid"; it contains the points of both Roombeek wells.
GRID_RING = [[6.890, 52.226], [6.900, 52.226], [6.900, 52.234], [6.890, 52.234], [6.890, 52.226]]

LOCATIONS: dict[str, dict[str, Any]] = {
    "Roombeek 12": point(6.8937, 52.2290),
    "Roombeek 40": point(6.8962, 52.2301),
    "Lasonderbleek 7": point(6.8830, 52.2305),
    "Oude Markt": point(6.8937, 52.2215),
    "Pathmosplein": point(6.8781, 52.2089),
    "Hengelosestraat 300": point(6.8702, 52.2248),
    "Oldenzaalsestraat 120": point(6.9105, 52.2298),
    "Roombeek grid": {"type": "Polygon", "coordinates": [GRID_RING]},
    "Depot Marssteden": point(6.8400, 52.2010),
}

SENSORS = ["Keller 36XW", "SDS011", "Status panel", "Eco-Counter"]
OBSERVED_PROPERTIES = [
    "groundwater level",
    "PM10",
    "station status",
    "door open",
    "bicycle count",
    "bicycle flow",
    "air temperature",
]


@dataclass(frozen=True)
class DatastreamDef:
    name: str
    thing: str
    unit: dict[str, str]
    observation_type: str
    sensor: str
    observed_property: str


DATASTREAMS: list[DatastreamDef] = [
    DatastreamDef("level R12", "Well Roombeek 12", UNIT_M, MEASUREMENT, "Keller 36XW", "groundwater level"),
    DatastreamDef("level R40", "Well Roombeek 40", UNIT_M, MEASUREMENT, "Keller 36XW", "groundwater level"),
    DatastreamDef("level L7", "Well Lasonder 7", UNIT_M, MEASUREMENT, "Keller 36XW", "groundwater level"),
    DatastreamDef("log L7", "Well Lasonder 7", UNIT_NONE, GENERIC, "Status panel", "station status"),
    DatastreamDef("pm10 Centrum", "Air Centrum", UNIT_PM, MEASUREMENT, "SDS011", "PM10"),
    DatastreamDef("status Centrum", "Air Centrum", UNIT_NONE, CATEGORY, "Status panel", "station status"),
    DatastreamDef("temp Centrum", "Air Centrum", UNIT_CELSIUS, MEASUREMENT, "SDS011", "air temperature"),
    DatastreamDef("pm10 Pathmos", "Air Pathmos", UNIT_PM, MEASUREMENT, "SDS011", "PM10"),
    DatastreamDef("door Pathmos", "Air Pathmos", UNIT_NONE, TRUTH, "Status panel", "door open"),
    DatastreamDef("count Hengelosestraat", "Bikes Hengelosestraat", UNIT_BIKES, COUNT, "Eco-Counter", "bicycle count"),
    DatastreamDef(
        "count Oldenzaalsestraat", "Bikes Oldenzaalsestraat", UNIT_BIKES, COUNT, "Eco-Counter", "bicycle count"
    ),
    DatastreamDef(
        "flow Oldenzaalsestraat", "Bikes Oldenzaalsestraat", UNIT_NONE, GENERIC, "Eco-Counter", "bicycle flow"
    ),
]
DS = {d.name: d for d in DATASTREAMS}


@dataclass(frozen=True)
class ThingDef:
    name: str
    description: str
    properties: dict[str, Any] | None
    locations: tuple[str, ...]


THINGS: list[ThingDef] = [
    ThingDef(
        "Well Roombeek 12",
        "groundwater well",
        {"buurt": "Roombeek", "kind": "well", "depth": 3.5, "tags": ["well", "crawlspace"]},
        ("Roombeek 12",),
    ),
    ThingDef(
        "Well Roombeek 40",
        "groundwater well",
        {"buurt": "Roombeek", "kind": "well", "depth": 5, "tags": ["well"]},
        ("Roombeek 40",),
    ),
    ThingDef(
        "Well Lasonder 7",
        "groundwater well",
        {"buurt": "Lasonder", "kind": "well", "depth": 2.25},
        ("Lasonderbleek 7",),
    ),
    ThingDef(
        "Air Centrum", "air quality box", {"buurt": "Centrum", "kind": "air", "tags": ["air", "pm10"]}, ("Oude Markt",)
    ),
    ThingDef("Air Pathmos", "air quality box", {"buurt": "Pathmos", "kind": "air"}, ("Pathmosplein",)),
    ThingDef(
        "Bikes Hengelosestraat",
        "bike counter",
        {"buurt": "Boddenkamp", "kind": "bike", "lanes": 2},
        ("Hengelosestraat 300",),
    ),
    ThingDef(
        "Bikes Oldenzaalsestraat",
        "bike counter",
        {"buurt": "Hogeland", "kind": "bike", "lanes": 1},
        ("Oldenzaalsestraat 120",),
    ),
    ThingDef("Roombeek grid", "sensor grid outline", {"buurt": "Roombeek", "kind": "grid"}, ("Roombeek grid",)),
    ThingDef("Spare unit", "unused box in the depot", None, ("Depot Marssteden", "Roombeek grid")),
]
THING = {t.name: t for t in THINGS}


@dataclass
class ObsDef:
    """One Observation as defined; ``id`` is filled in by ``build_city``."""

    ds: str
    start: dt.datetime
    end: dt.datetime | None  # None: an instant
    result: Any
    result_time: dt.datetime | None = None
    valid_time: tuple[dt.datetime, dt.datetime] | None = None
    parameters: dict[str, Any] | None = None
    how: str = "bulk"  # bulk (CreateObservations), deep (inside the Thing's POST) or post
    id: int = 0

    @property
    def thing(self) -> str:
        return DS[self.ds].thing

    @property
    def last(self) -> dt.datetime:
        return self.end if self.end is not None else self.start

    def phenomenon_text(self) -> str:
        return iso(self.start) if self.end is None else f"{iso(self.start)}/{iso(self.end)}"


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


STATUSES = ["ok", "warn", "fault", "OK", "  ok  ", "maintenance", "o'brien", "Warn"]
LOG_L7: list[Any] = [
    {"level": 1.5, "ok": True},
    "calibrating",
    None,
    7,
    {"level": 0.5, "note": "dry"},
    True,
    {"level": 3, "ok": False},
    "ok",
    2.75,
    {"note": "no level"},
    False,
    {"level": -1, "ok": True},
]


TEMP_HOURS = 3000


def observation_defs() -> list[ObsDef]:
    """Every Observation of the city, in creation order per Datastream."""
    obs: list[ObsDef] = []
    for i in range(40):
        how = "deep" if i < 3 else "bulk"
        obs.append(ObsDef("level R12", T0 + i * HOUR, None, ((i * 7) % 13 - 4) * 0.5, how=how))
    for i in range(40):
        value = None if i % 10 == 9 else (i * 5) % 17 - 3
        obs.append(ObsDef("level R40", T0 + 30 * MINUTE + i * 90 * MINUTE, None, value))
    start = dt.datetime(2025, 12, 20, 6, 0, tzinfo=UTC)
    for i in range(30):
        obs.append(ObsDef("level L7", start + i * DAY, None, (i * 11 % 29) * 0.25 - 3.5))
    start = dt.datetime(2025, 12, 20, 12, 0, tzinfo=UTC)
    for i, value in enumerate(LOG_L7):
        obs.append(ObsDef("log L7", start + i * DAY, None, value, how="post" if i % 4 == 0 else "bulk"))
    start = dt.datetime(2026, 1, 2, tzinfo=UTC)
    for i in range(48):
        t = start + i * HOUR
        obs.append(
            ObsDef(
                "pm10 Centrum",
                t,
                None,
                (i * 13 % 40) * 0.5 + 10.0,
                result_time=t + 5 * MINUTE,
                valid_time=(t, t + HOUR) if i % 12 == 0 else None,
                parameters={"calibrated": i % 3 == 0, "method": "beta"},
            )
        )
    # A long series: hourly for 125 days, so that paging, ordering and time filters meet thousands of rows.
    start = dt.datetime(2025, 9, 1, tzinfo=UTC)
    for i in range(TEMP_HOURS):
        obs.append(ObsDef("temp Centrum", start + i * HOUR, None, (i * 37 % 80 - 20) * 0.25))
    start = dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC)
    for i in range(24):
        obs.append(ObsDef("status Centrum", start + i * 2 * HOUR, None, STATUSES[i % len(STATUSES)]))
    start = dt.datetime(2026, 1, 3, tzinfo=UTC)
    for i in range(30):
        how = "post" if i >= 28 else "bulk"
        t = start + i * HOUR
        obs.append(
            ObsDef(
                "pm10 Pathmos",
                t,
                None,
                (i * 7 % 30) * 1.5,
                result_time=t + MINUTE if how == "post" else None,
                valid_time=(t, t + DAY) if how == "post" else None,
                how=how,
            )
        )
    start = dt.datetime(2026, 1, 3, 0, 15, tzinfo=UTC)
    for i in range(20):
        obs.append(ObsDef("door Pathmos", start + i * HOUR, None, None if i % 7 == 6 else i % 3 == 0))
    for i in range(36):
        obs.append(
            ObsDef(
                "count Hengelosestraat",
                T0 + i * HOUR,
                T0 + (i + 1) * HOUR,
                i * 17 % 50,
                parameters={"lane": "north" if i % 2 else "south"},
            )
        )
    for i in range(24):
        s = T0 + 30 * MINUTE + i * 2 * HOUR
        obs.append(ObsDef("count Oldenzaalsestraat", s, s + 2 * HOUR, i * 23 % 60))
    for i in range(20):
        result: dict[str, Any] = {"level": i % 5, "direction": "in" if i % 2 == 0 else "out", "ok": i % 4 != 3}
        if i == 7:
            result["level"] = 2.5
        obs.append(ObsDef("flow Oldenzaalsestraat", T0 + i * 3 * HOUR, None, result))
    return obs


@dataclass
class City:
    """The city as built: ids by name, and the observations with their ids."""

    things: dict[str, int] = field(default_factory=dict)
    locations: dict[str, int] = field(default_factory=dict)
    datastreams: dict[str, int] = field(default_factory=dict)
    sensors: dict[str, int] = field(default_factory=dict)
    observed_properties: dict[str, int] = field(default_factory=dict)
    observations: list[ObsDef] = field(default_factory=list, repr=False)

    def obs(self, *datastreams: str) -> Iterator[ObsDef]:
        """The observations of the given Datastreams (all when none are given)."""
        return (o for o in self.observations if not datastreams or o.ds in datastreams)

    def obs_ids(self, pred: Any = None, *datastreams: str) -> set[int]:
        return {o.id for o in self.obs(*datastreams) if pred is None or pred(o)}


def _check(response: Any, status: int = 201) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def _obs_body(o: ObsDef) -> dict[str, Any]:
    body: dict[str, Any] = {"phenomenonTime": o.phenomenon_text(), "result": o.result}
    if o.result_time is not None:
        body["resultTime"] = iso(o.result_time)
    if o.valid_time is not None:
        body["validTime"] = f"{iso(o.valid_time[0])}/{iso(o.valid_time[1])}"
    if o.parameters is not None:
        body["parameters"] = o.parameters
    return body


def _micros(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def build_city(client: TestClient) -> City:
    city = City(observations=observation_defs())
    for name in SENSORS:
        doc = _check(
            client.post(
                f"{BASE}/Sensors",
                json={"name": name, "description": f"{name} sensor", "encodingType": "text/html", "metadata": "-"},
            )
        )
        city.sensors[name] = doc["@iot.id"]
    for name in OBSERVED_PROPERTIES:
        op_body = {"name": name, "definition": f"https://example.org/{name.replace(' ', '_')}", "description": name}
        city.observed_properties[name] = _check(client.post(f"{BASE}/ObservedProperties", json=op_body))["@iot.id"]

    by_ds: dict[str, list[ObsDef]] = {}
    for o in city.observations:
        by_ds.setdefault(o.ds, []).append(o)

    for thing in THINGS:
        locations: list[dict[str, Any]] = []
        for loc in thing.locations:
            if loc in city.locations:
                locations.append({"@iot.id": city.locations[loc]})
            else:
                locations.append(
                    {
                        "name": loc,
                        "description": f"location {loc}",
                        "encodingType": "application/geo+json",
                        "location": LOCATIONS[loc],
                    }
                )
        datastreams = []
        for d in DATASTREAMS:
            if d.thing != thing.name:
                continue
            ds_body: dict[str, Any] = {
                "name": d.name,
                "description": f"{d.observed_property} at {thing.name}",
                "unitOfMeasurement": d.unit,
                "observationType": d.observation_type,
                "Sensor": {"@iot.id": city.sensors[d.sensor]},
                "ObservedProperty": {"@iot.id": city.observed_properties[d.observed_property]},
            }
            deep = [_obs_body(o) for o in by_ds.get(d.name, []) if o.how == "deep"]
            if deep:
                ds_body["Observations"] = deep
            datastreams.append(ds_body)
        body: dict[str, Any] = {"name": thing.name, "description": thing.description, "Locations": locations}
        if thing.properties is not None:
            body["properties"] = thing.properties
        if datastreams:
            body["Datastreams"] = datastreams
        city.things[thing.name] = _check(client.post(f"{BASE}/Things", json=body))["@iot.id"]
        for loc in _check(client.get(f"{BASE}/Things({city.things[thing.name]})/Locations"), 200)["value"]:
            city.locations[loc["name"]] = loc["@iot.id"]

    for ds in _check(client.get(f"{BASE}/Datastreams?$top=1000&$select=id,name"), 200)["value"]:
        city.datastreams[ds["name"]] = ds["@iot.id"]

    # Single POSTs, then one CreateObservations request with a dataArray per Datastream.
    for o in city.observations:
        if o.how == "post":
            obs_body = {**_obs_body(o), "Datastream": {"@iot.id": city.datastreams[o.ds]}}
            _check(client.post(f"{BASE}/Observations", json=obs_body))
    components = ["phenomenonTime", "result", "resultTime", "validTime", "parameters"]
    groups = []
    for name, items in by_ds.items():
        rows = []
        for o in items:
            if o.how != "bulk":
                continue
            b = _obs_body(o)
            rows.append([b["phenomenonTime"], o.result, b.get("resultTime"), b.get("validTime"), b.get("parameters")])
        groups.append({"Datastream": {"@iot.id": city.datastreams[name]}, "components": components, "dataArray": rows})
    links = _check(client.post(f"{BASE}/CreateObservations", json=groups))
    assert not [link for link in links if link.startswith("error")], links

    # Resolve every Observation's id by (Datastream, phenomenonTime): unique in this city.
    keyed = {(city.datastreams[o.ds], _micros(o.start), _micros(o.last)): o for o in city.observations}
    url = f"{BASE}/Observations?$top=10000&$select=id,phenomenonTime&$expand=Datastream($select=id)"
    rows = _check(client.get(url), 200)["value"]
    assert len(rows) == len(city.observations)
    for row in rows:
        start_text, _, end_text = row["phenomenonTime"].partition("/")
        start = _micros(_parse_time(start_text))
        end = _micros(_parse_time(end_text)) if end_text else start
        keyed[(row["Datastream"]["@iot.id"], start, end)].id = row["@iot.id"]
    assert all(o.id for o in city.observations)
    return city
