"""The monitored homes: a TOML file kept by the city, and each home's Thing and Datastreams on the platform.

```toml
barometer = 12                 # the reference barometer's Datastream id (air pressure)
barometer_unit = "hPa"         # hPa (default), Pa or bar

[[home]]
id = "home-0042"               # pseudonymous: no address, no name
owner = "resident-7f3a9c"      # pseudonymous id of the resident, the owner of the well's data
address = "Voorbeeldstraat 1, 7511 AA Enschede"   # personal data: stays in this file
email = "bewoner@example.nl"                      # personal data: stays in this file, alerts go there
buurtcode = "BU01530310"       # CBS neighbourhood code
floor_nap = 38.55              # floor level (m NAP)
crawlspace_floor_nap = 37.85   # bottom of the crawlspace (m NAP)
location = [6.8937, 52.2215]   # lon, lat of the well (published rounded to the neighbourhood only later)

[home.sensor]
kind = "pressure"              # pressure (absolute transducer on a cable) or distance (ultrasonic/radar)
model = "Decentlab DL-PR26"
device_id = "dl-pr26-0042"     # the LoRaWAN device id in the network server
interval_s = 900
field = "pressure_bar"         # the decoded payload member the ingest mapping stores in the raw Datastream
battery_field = "battery_v"
payload = "decentlab-dl-pr26-2bar"   # decoder of the raw bytes (sensors.py), if the network server sends them undecoded

[[home.calibration]]
valid_from = 2026-01-01T00:00:00Z
well_top_nap = 37.95
cable_length = 2.50            # pressure: m from the tube top to the membrane
absolute = true                # pressure: absolute (barometric compensation) or gauge
# sensor_above_top = 0.05      # distance: m from the tube top up to the sensor's face

[home.alert]
min_depth = 0.20               # alert when the water is higher than 0.20 m below the crawlspace floor
```

Personal data (address, e-mail) is never sent to the platform and never logged: a ``Home``'s repr
leaves it out. On the platform, the home is known by its pseudonymous id, and its Thing and
Datastreams carry ``{"visibility": "personal", "owner": "<pseudonymous id>"}`` in their properties, and the
Thing ``{"project": "groundwater"}``: the marks the platform's access control enforces (docs/access.md): a
resident sees their own well only, the app's service account needs the writer role with the personal right
in project groundwater, and neighbourhood aggregates are released only with at least five homes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stadsdata.apps.groundwater.levels import Calibration, CalibrationError, SensorKind
from stadsdata.apps.groundwater.platform import Platform

DOMAIN = "groundwater"
PROJECT = "groundwater"
"""The access-control project of the homes' Things."""
ROLES = ("raw", "battery", "level", "depth")
UCUM = "http://www.opengis.net/def/uom/UCUM/0/"


class RegistryError(ValueError):
    """The homes file is wrong; the message says where."""


@dataclass(frozen=True)
class AlertSettings:
    min_depth: float = 0.20
    """Alert when the water is less than this many metres below the crawlspace floor."""
    hysteresis: float = 0.05
    """The alert ends when the water is this much further down again (no flapping around the threshold)."""
    confirm: int = 2
    """Consecutive readings past the threshold before an alert (one spike is not a flood)."""
    rise_per_day: float = 0.05
    """A rising trend: at least this many metres a day over ``trend_hours``, …"""
    trend_hours: float = 24.0
    horizon_days: float = 3.0
    """… that reaches the threshold within this many days if it goes on."""


@dataclass(frozen=True)
class Home:
    id: str
    owner: str
    buurtcode: str
    floor_nap: float
    crawlspace_floor_nap: float
    location: tuple[float, float]
    kind: SensorKind
    device_id: str
    calibrations: tuple[Calibration, ...]
    model: str = ""
    interval_s: int = 900
    raw_field: str = "pressure_bar"
    battery_field: str = "battery_v"
    payload: str = ""
    """The payload decoder of the device's raw uplinks (``sensors``), when the network server does not decode."""
    alert: AlertSettings = AlertSettings()
    address: str = field(default="", repr=False, compare=False)
    email: str = field(default="", repr=False, compare=False)

    def personal_marks(self) -> dict[str, str]:
        return {"visibility": "personal", "owner": self.owner}


@dataclass(frozen=True)
class Registry:
    homes: tuple[Home, ...]
    barometer: int | None = None
    barometer_unit: str = "hPa"

    def home(self, key: str) -> Home:
        for h in self.homes:
            if key in (h.id, h.device_id):
                return h
        raise RegistryError(f"no home {key!r} in the registry")


def _num(table: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"{where}: {key} must be a number")
    return float(value)


def _calibration(c: dict[str, Any], kind: SensorKind, crawl: float, where: str) -> Calibration:
    when = c.get("valid_from")
    if not isinstance(when, datetime):
        raise RegistryError(f"{where}: valid_from must be a TOML date-time with offset, e.g. 2026-01-01T00:00:00Z")
    try:
        return Calibration(
            valid_from=when,
            kind=kind,
            well_top_nap=_num(c, "well_top_nap", where),
            crawlspace_floor_nap=_num(c, "crawlspace_floor_nap", where, crawl),
            cable_length=_num(c, "cable_length", where) if kind == "pressure" else None,
            absolute=bool(c.get("absolute", True)),
            sensor_above_top=_num(c, "sensor_above_top", where, 0.0),
        )
    except CalibrationError as e:
        raise RegistryError(f"{where}: {e}") from None


def _alert(table: dict[str, Any], where: str) -> AlertSettings:
    known = set(AlertSettings.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise RegistryError(
            f"{where}: [home.alert] has no {', '.join(sorted(unknown))}; it knows {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {k: _num(table, k, f"{where}, [home.alert]") for k in table}
    if "confirm" in values:
        values["confirm"] = max(1, int(values["confirm"]))
    return AlertSettings(**values)


def parse(doc: dict[str, Any], source: str = "homes file") -> Registry:
    homes: list[Home] = []
    seen: set[str] = set()
    for n, h in enumerate(doc.get("home", []), start=1):
        where = f"{source}, [[home]] {n}"
        try:
            key = str(h["id"])
            where = f"{source}, [[home]] {n} ({key})"
            sensor = h["sensor"]
            kind = sensor.get("kind", "pressure")
            if kind not in ("pressure", "distance", "level"):
                raise RegistryError(f"{where}: sensor kind must be pressure, distance or level")
            crawl = _num(h, "crawlspace_floor_nap", where)
            cals = tuple(
                _calibration(c, kind, crawl, f"{where}, calibration {i}")
                for i, c in enumerate(h.get("calibration", []), start=1)
            )
            if not cals:
                raise RegistryError(f"{where}: at least one [[home.calibration]] is needed")
            lon, lat = h["location"]
            alert = h.get("alert", {})
            home = Home(
                id=key,
                owner=str(h["owner"]),
                buurtcode=str(h["buurtcode"]),
                floor_nap=_num(h, "floor_nap", where),
                crawlspace_floor_nap=crawl,
                location=(float(lon), float(lat)),
                kind=kind,
                device_id=str(sensor["device_id"]),
                calibrations=cals,
                model=str(sensor.get("model", "")),
                interval_s=int(sensor.get("interval_s", 900)),
                raw_field=str(
                    sensor.get("field", {"pressure": "pressure_bar", "distance": "distance_m"}.get(kind, "level"))
                ),
                battery_field=str(sensor.get("battery_field", "battery_v")),
                payload=str(sensor.get("payload", "")),
                alert=_alert(alert, where),
                address=str(h.get("address", "")),
                email=str(h.get("email", "")),
            )
        except KeyError as e:
            raise RegistryError(f"{where}: {e.args[0]} is missing") from None
        except TypeError as e:
            raise RegistryError(f"{where}: {e}") from None
        if key in seen:
            raise RegistryError(f"{where}: the id {key!r} is used twice")
        seen.add(key)
        homes.append(home)
    barometer = doc.get("barometer")
    unit = doc.get("barometer_unit", "hPa")
    if unit not in ("hPa", "Pa", "bar"):
        raise RegistryError(f"{source}: barometer_unit must be hPa, Pa or bar")
    return Registry(tuple(homes), int(barometer) if barometer is not None else None, unit)


def load(path: str | Path) -> Registry:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{p}: {e}") from None
    return parse(doc, str(p))


def calibration_json(c: Calibration) -> dict[str, Any]:
    return {
        "valid_from": c.valid_from.isoformat(),
        "kind": c.kind,
        "well_top_nap": c.well_top_nap,
        "crawlspace_floor_nap": c.crawlspace_floor_nap,
        "cable_length": c.cable_length,
        "absolute": c.absolute,
        "sensor_above_top": c.sensor_above_top,
    }


def calibration_from_json(d: dict[str, Any]) -> Calibration:
    return Calibration(
        valid_from=datetime.fromisoformat(d["valid_from"]),
        kind=d["kind"],
        well_top_nap=d["well_top_nap"],
        crawlspace_floor_nap=d["crawlspace_floor_nap"],
        cable_length=d.get("cable_length"),
        absolute=d.get("absolute", True),
        sensor_above_top=d.get("sensor_above_top", 0.0),
    )


@dataclass
class Stored:
    """A home as it is on the platform: its Thing and Datastream ids by role, and the calibrations it had."""

    home: Home
    thing: int
    datastreams: dict[str, int]
    previous: tuple[Calibration, ...]


_UNITS = {
    "pressure": {"name": "pascal", "symbol": "Pa", "definition": UCUM + "Pa"},
    "distance": {"name": "metre", "symbol": "m", "definition": UCUM + "m"},
    "battery": {"name": "volt", "symbol": "V", "definition": UCUM + "V"},
    "battery_pct": {"name": "percent", "symbol": "%", "definition": UCUM + "%25"},
    "level": {"name": "metre above NAP", "symbol": "m NAP", "definition": UCUM + "m"},
    "depth": {"name": "metre", "symbol": "m", "definition": UCUM + "m"},
}
_OBSERVED = {
    "pressure": ("Absolute pressure in a well", "Water plus air pressure at the probe in a groundwater well"),
    "distance": ("Distance to the water in a well", "Distance from the sensor down to the water surface"),
    "battery": ("Battery voltage", "Voltage of the sensor's battery"),
    "level": ("Groundwater level", "Level of the groundwater in metres above NAP (Normaal Amsterdams Peil)"),
    "depth": (
        "Groundwater depth below the crawlspace floor",
        "Metres the groundwater is below the floor of the crawlspace; negative when it stands in the crawlspace",
    ),
}


def store(platform: Platform, home: Home) -> Stored:
    """Create the home's Thing and Datastreams, or update their properties; returns their ids and the
    calibrations the platform had before (to see whether derived levels must be recomputed)."""
    marks = home.personal_marks()
    props = {
        "domain": DOMAIN,
        "home": home.id,
        "buurtcode": home.buurtcode,
        "floor_level_m_nap": home.floor_nap,
        "crawlspace_floor_m_nap": home.crawlspace_floor_nap,
        "well_top_m_nap": home.calibrations[-1].well_top_nap,
        "device_id": home.device_id,
        "interval_s": home.interval_s,
        "sensor_kind": home.kind,
        "min_depth_m": home.alert.min_depth,
        "calibrations": [calibration_json(c) for c in home.calibrations],
        **marks,
    }
    found = _find_thing(platform, home)
    if not found:
        props["project"] = PROJECT  # set when created; moving a Thing to another project is for admins
    raw_kind = "pressure" if home.kind == "pressure" else "distance"
    roles = {"raw": raw_kind, "battery": "battery", "level": "level", "depth": "depth"}
    battery_unit = _UNITS["battery_pct" if home.battery_field.endswith("_pct") else "battery"]
    sensor = platform.link(
        "Sensors",
        {
            "name": home.model or f"groundwater {home.kind} sensor",
            "description": f"{home.kind} sensor in a crawlspace well",
            "encodingType": "text/html",
            "metadata": "docs/groundwater.md",
        },
    )

    def datastream(role: str, thing_name: str) -> dict[str, Any]:
        what = roles[role]
        name, description = _OBSERVED[what]
        return {
            "name": f"{thing_name}: {name.lower()}",
            "description": description + (" (derived by the groundwater app)" if role in ("level", "depth") else ""),
            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            "unitOfMeasurement": battery_unit if role == "battery" else _UNITS[what],
            "properties": {"domain": DOMAIN, "home": home.id, "role": role, "buurtcode": home.buurtcode, **marks},
            "Sensor": sensor,
            "ObservedProperty": platform.link(
                "ObservedProperties",
                {"name": name, "definition": f"urn:stadsdata:groundwater:{what}", "description": description},
            ),
        }

    thing_name = str(found[0].get("name") or "") if found else ""
    thing_name = thing_name or f"Groundwater well {home.id}"
    if not found:
        body = {
            "name": thing_name,
            "description": f"Crawlspace well in a home in neighbourhood {home.buurtcode}",
            "properties": props,
            "Locations": [
                {
                    "name": f"Home {home.id}",
                    "description": f"a home in {home.buurtcode}",
                    "encodingType": "application/geo+json",
                    "location": {"type": "Point", "coordinates": list(home.location)},
                }
            ],
            "Datastreams": [datastream(r, thing_name) for r in _needed(home)],
        }
        thing = int(platform.send("POST", "Things", body)["@iot.id"])
        previous: tuple[Calibration, ...] = ()
    else:
        thing = int(found[0]["@iot.id"])
        had = found[0].get("properties") or {}
        previous = tuple(calibration_from_json(c) for c in had.get("calibrations", []))
        platform.send("PATCH", f"Things({thing})", {"properties": {**had, **props}})
    have = _roles(platform, thing, home, adopt=marks)
    for role in _needed(home):
        if role not in have:
            have[role] = int(
                platform.send("POST", "Datastreams", {**datastream(role, thing_name), "Thing": {"@iot.id": thing}})[
                    "@iot.id"
                ]
            )
    if home.kind == "level":
        have["raw"] = have["level"]  # the level is what the sensor reports
    return Stored(home, thing, have, previous)


def _needed(home: Home) -> tuple[str, ...]:
    return tuple(r for r in ROLES if not (home.kind == "level" and r == "raw"))


def _find_thing(platform: Platform, home: Home) -> list[dict[str, Any]]:
    """The home's Thing: by its home id, else a groundwater Thing of its device (one that its sensor's own
    setup created, as ``stadsdata demo`` does)."""
    found = platform.find("Things", f"properties/domain eq '{DOMAIN}' and properties/home eq '{home.id}'")
    if not found:
        quoted = home.device_id.replace("'", "''")
        found = platform.find("Things", f"properties/domain eq '{DOMAIN}' and properties/device_id eq '{quoted}'")
    return found


def _roles(platform: Platform, thing: int, home: Home, adopt: dict[str, str] | None = None) -> dict[str, int]:
    """The Thing's Datastreams by role; one without a role whose ``field`` property is the sensor's field (or its
    battery's) takes that role, and with ``adopt`` it is marked so (and personal) on the platform."""
    by_field = {home.raw_field: "level" if home.kind == "level" else "raw", home.battery_field: "battery"}
    have: dict[str, int] = {}
    rows = platform.send("GET", f"Things({thing})/Datastreams?$select=id,properties&$top=100", None)["value"]
    for d in rows:
        props = d.get("properties") or {}
        role = props.get("role") or by_field.get(props.get("field", ""))
        if role is None or role in have:
            continue
        have[role] = int(d["@iot.id"])
        if adopt is not None and props.get("role") != role:
            extra = {"domain": DOMAIN, "home": home.id, "role": role, "buurtcode": home.buurtcode, **adopt}
            platform.send("PATCH", f"Datastreams({d['@iot.id']})", {"properties": {**props, **extra}})
    if home.kind == "level" and "level" in have:
        have["raw"] = have["level"]
    return have


def mapping_toml(stored: list[Stored]) -> str:
    """The ingest mapping (docs/ingest.md) of the homes' sensors: raw reading and battery per device, with the
    device's payload decoder when it has one. A pressure in bar is stored in Pa (× 100000)."""
    lines = ["# The groundwater app's homes: their LoRaWAN devices to their raw Datastreams (docs/groundwater.md)"]
    for s in stored:
        h = s.home
        if h.kind == "level":
            continue  # its mapping turns the reading into m NAP itself, with the sensor's own conversion
        lines += ["", "[[device]]", f'device_id = "{h.device_id}"']
        if h.payload:
            lines.append(f'payload = "{h.payload}"')
        lines.append("[device.fields]")
        scale = " , scale = 100000.0" if h.kind == "pressure" and h.raw_field.endswith("_bar") else ""
        lines.append(f"{h.raw_field} = {{ datastream = {s.datastreams['raw']}{scale.replace(' ,', ',')} }}")
        lines.append(f"{h.battery_field} = {s.datastreams['battery']}")
    return "\n".join(lines) + "\n"


def lookup(platform: Platform, home: Home) -> Stored:
    """The home's Thing and Datastreams on the platform, without changing anything."""
    found = _find_thing(platform, home)
    if not found:
        raise RegistryError(f"home {home.id} is not on the platform yet: stadsdata groundwater homes load")
    thing = int(found[0]["@iot.id"])
    have = _roles(platform, thing, home)
    previous = tuple(calibration_from_json(c) for c in found[0].get("properties", {}).get("calibrations", []))
    return Stored(home, thing, have, previous)
