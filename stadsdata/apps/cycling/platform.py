"""Storing intersections and evaluation results on a stadsdata platform, through its public HTTP API only.

An intersection becomes a Thing (its topology file in ``properties.topology``) with a Location
at its centre, a "cyclist positions" Datastream for the app's position reports, and one
Datastream per cycle signal group for the priority requests sent to it (SRM- and SSM-like JSON
results). Loading again updates the Thing and adds Datastreams that are missing (found by name).
Evaluation results become a Thing per scenario with one Datastream per metric and variant;
each evaluation adds an Observation whose result is the mean and whose ``parameters`` hold the
95 % confidence interval, the number of seeds and the simulated hours.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stadsdata.access.tokens import client_headers
from stadsdata.apps.cycling.evaluate import METRICS, Evaluation
from stadsdata.apps.cycling.topology import Intersection

Transport = Callable[[str, str, dict[str, Any] | None], dict[str, Any]]
"""(method, path below the service root, JSON body) -> JSON answer."""

UNITS = {
    "s": {"name": "second", "symbol": "s", "definition": "http://qudt.org/vocab/unit/SEC"},
    "%": {"name": "percent", "symbol": "%", "definition": "http://qudt.org/vocab/unit/PERCENT"},
    "request": {"name": "request", "symbol": "{request}", "definition": "http://qudt.org/vocab/unit/NUM"},
    "report": {"name": "position report", "symbol": "{report}", "definition": "http://qudt.org/vocab/unit/NUM"},
}
JSON_OBSERVATION = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation"
"""Position reports and priority requests have JSON objects as results."""
POSITIONS = "cyclist positions"
REQUESTS = "priority requests"


def positions_name(intersection: Intersection) -> str:
    return f"{intersection.name}: {POSITIONS}"


def requests_name(intersection: Intersection, group: str) -> str:
    return f"{intersection.name}: {REQUESTS}, signal group {group}"


class PlatformError(RuntimeError):
    """The platform answered with an error, or could not be reached."""


def http_transport(base_url: str, timeout: float = 30.0) -> Transport:
    """A transport over HTTP to a running stadsdata, e.g. ``http://127.0.0.1:8080/v1.1``; with access control on,
    it sends the token in ``$STADSDATA_TOKEN``."""
    root = base_url.rstrip("/")
    headers = client_headers()

    def send(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{root}/{path.lstrip('/')}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise PlatformError(f"{method} {root}/{path}: {e.code} {e.read().decode(errors='replace')}") from None
        except urllib.error.URLError as e:
            raise PlatformError(f"{method} {root}/{path}: {e.reason}") from None
        return dict(json.loads(raw)) if raw else {}

    return send


class Platform:
    def __init__(self, transport: Transport) -> None:
        self.send = transport

    def _find(self, entity_set: str, name: str, extra: str = "") -> dict[str, Any] | None:
        quoted = name.replace("'", "''")
        flt = urllib.parse.quote(f"name eq '{quoted}'{extra}")
        found = self.send("GET", f"{entity_set}?$filter={flt}&$top=1", None).get("value", [])
        return dict(found[0]) if found else None

    def _link(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        """A link to the entity of that name, created first when there is none."""
        existing = self._find(entity_set, body["name"]) or self.send("POST", entity_set, body)
        return {"@iot.id": existing["@iot.id"]}

    def store_intersection(self, intersection: Intersection) -> int:
        """Create or update the intersection's Thing and its Datastreams (each looked up by name); returns its id."""
        props = {"kind": "signalised intersection", "intersection": intersection.id, "topology": intersection.to_json()}
        existing = self._find("Things", intersection.name)
        if existing is not None:
            self.send("PATCH", f"Things({existing['@iot.id']})", {"properties": props})
            thing_id = int(existing["@iot.id"])
        else:
            lon, lat = intersection.position
            body = {
                "name": intersection.name,
                "description": f"Traffic-light controlled intersection {intersection.id}",
                "properties": props,
                "Locations": [
                    {
                        "name": intersection.name,
                        "description": "centre of the intersection",
                        "encodingType": "application/geo+json",
                        "location": {"type": "Point", "coordinates": [lon, lat]},
                    }
                ],
            }
            thing_id = int(self.send("POST", "Things", body)["@iot.id"])
        for body in self._intersection_streams(intersection):
            if self._find("Datastreams", str(body["name"]), f" and Thing/id eq {thing_id}") is None:
                self.send("POST", "Datastreams", {**body, "Thing": {"@iot.id": thing_id}})
        return thing_id

    def _intersection_streams(self, intersection: Intersection) -> list[dict[str, Any]]:
        """The cyclist positions Datastream, and one priority requests Datastream per cycle signal group."""
        service = self._link("Sensors", _sensor())
        app = self._link("Sensors", _app_sensor())
        requests = self._link(
            "ObservedProperties", _observed("priority request", "A cyclist's request for green (SRM) and its answers.")
        )
        positions = self._link(
            "ObservedProperties",
            _observed("cyclist position", "A cyclist's position report from the app (pseudonymous, short-lived)."),
        )
        streams: list[dict[str, Any]] = [
            {
                "name": positions_name(intersection),
                "description": f"Position reports of cyclists approaching {intersection.id} (deleted after minutes)",
                "observationType": JSON_OBSERVATION,
                "unitOfMeasurement": UNITS["report"],
                "properties": {"kind": POSITIONS, "intersection": intersection.id},
                "Sensor": app,
                "ObservedProperty": positions,
            }
        ]
        streams += [
            {
                "name": requests_name(intersection, g.id),
                "description": f"Priority requests for signal group {g.id} ({g.name})",
                "observationType": JSON_OBSERVATION,
                "unitOfMeasurement": UNITS["request"],
                "properties": {"kind": REQUESTS, "intersection": intersection.id, "signal_group": g.id},
                "Sensor": service,
                "ObservedProperty": requests,
            }
            for g in intersection.signal_groups
            if g.kind == "cycle"
        ]
        return streams

    def store_evaluation(
        self, evaluation: Evaluation, position: tuple[float, float], when: datetime | None = None
    ) -> int:
        """Add one Observation per metric and variant; returns how many were stored. ``position`` (lon, lat)
        locates the scenario's Thing, and so the Observations' feature of interest."""
        when = when or datetime.now(UTC)
        name = f"Cycling priority evaluation: {evaluation.scenario}"
        thing = self._find("Things", name)
        if thing is None:
            thing = self.send(
                "POST",
                "Things",
                {
                    "name": name,
                    "description": "SUMO evaluation of priority requests from the cycling app",
                    "properties": {"scenario": evaluation.scenario},
                    "Locations": [
                        {
                            "name": evaluation.scenario,
                            "description": "the simulated intersection",
                            "encodingType": "application/geo+json",
                            "location": {"type": "Point", "coordinates": list(position)},
                        }
                    ],
                },
            )
        thing_id = thing["@iot.id"]
        sensor = self._link("Sensors", _sensor())
        stored = 0
        for variant in evaluation.rows:
            for metric, (label, unit) in METRICS.items():
                ci = evaluation.interval(variant, metric)
                if math.isnan(ci.mean):
                    continue
                ds_name = f"{label}, {variant.label}"
                ds = self._find("Datastreams", ds_name, f" and Thing/id eq {thing_id}")
                if ds is None:
                    ds = self.send(
                        "POST",
                        "Datastreams",
                        {
                            "name": ds_name,
                            "description": f"Mean {label} over seeds in the SUMO evaluation, {variant.label}",
                            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                            "unitOfMeasurement": UNITS[unit],
                            "properties": {
                                "metric": metric,
                                "penetration": variant.penetration,
                                "window": variant.window,
                            },  # fmt: skip
                            "Thing": {"@iot.id": thing_id},
                            "Sensor": sensor,
                            "ObservedProperty": self._link("ObservedProperties", _observed(label, f"{label} ({unit})")),
                        },
                    )
                self.send(
                    "POST",
                    f"Datastreams({ds['@iot.id']})/Observations",
                    {
                        "phenomenonTime": when.isoformat().replace("+00:00", "Z"),
                        "result": round(ci.mean, 3),
                        "parameters": {
                            "ci95_low": None if math.isnan(ci.low) else round(ci.low, 3),
                            "ci95_high": None if math.isnan(ci.high) else round(ci.high, 3),
                            "seeds": ci.n,
                            "hours": evaluation.hours,
                        },
                    },
                )
                stored += 1
        return stored


def _sensor() -> dict[str, Any]:
    return {
        "name": "stadsdata cycling priority (SUMO evaluation)",
        "description": "Priority requests from the cycling app; evaluation in Eclipse SUMO",
        "encodingType": "text/html",
        "metadata": "docs/cycling.md",
    }


def _app_sensor() -> dict[str, Any]:
    return {
        "name": "stadsdata cycling app (phone GNSS)",
        "description": "The cycling app on a phone: GNSS position, speed and heading, under a pseudonym per trip",
        "encodingType": "text/html",
        "metadata": "docs/cycling.md",
    }


def _observed(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "definition": f"urn:stadsdata:cycling:{name.replace(' ', '-')}", "description": description}
