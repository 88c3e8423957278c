"""Request bodies for tests: a small Enschede groundwater-well setup."""

from __future__ import annotations

from typing import Any

POINT = {"type": "Point", "coordinates": [6.8937, 52.2215]}
UNIT_M = {"name": "metre", "symbol": "m", "definition": "http://qudt.org/vocab/unit/M"}
MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


def location(name: str = "Roombeek 12", point: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "description": "crawlspace well",
        "encodingType": "application/geo+json",
        "location": point or POINT,
    }


def sensor(name: str = "Keller 36XW") -> dict[str, Any]:
    return {
        "name": name,
        "description": "pressure transducer",
        "encodingType": "application/pdf",
        "metadata": "https://keller-druck.com/36xw.pdf",
    }


def observed_property(name: str = "groundwater level") -> dict[str, Any]:
    return {"name": name, "definition": "https://www.wikidata.org/wiki/Q1154438", "description": "level in m NAP"}


def datastream(name: str = "level", **links: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "groundwater level below the home",
        "unitOfMeasurement": UNIT_M,
        "observationType": MEASUREMENT,
    }
    body.update(links)
    return body


def thing(name: str = "Well Roombeek 12", **links: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "description": "groundwater well", "properties": {"buurt": "Roombeek"}}
    body.update(links)
    return body


def full_thing(name: str = "Well Roombeek 12") -> dict[str, Any]:
    """A Thing with a Location and one Datastream with new Sensor and ObservedProperty."""
    return thing(
        name,
        Locations=[location()],
        Datastreams=[datastream(Sensor=sensor(), ObservedProperty=observed_property())],
    )
