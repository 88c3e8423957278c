"""The entity registry: every SensorThings entity type, declared once, as data.

Path parsing, validation, serialisation, the SQL schema and (later) the
OpenAPI document are all generic over this registry. Entity-specific
behaviour (derived FeaturesOfInterest, HistoricalLocations, default times)
lives in ``rules.py``, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What values a property holds; the store maps each kind to columns."""

    STRING = "string"
    URI = "uri"
    OBJECT = "object"  # a JSON object (properties, parameters, unitOfMeasurement)
    ARRAY = "array"  # a JSON array (unitOfMeasurements, multiObservationDataTypes)
    ANY = "any"  # any JSON value (result, metadata, resultQuality)
    GEOMETRY = "geometry"  # a GeoJSON geometry or feature
    INSTANT = "instant"  # ISO 8601 time instant
    INTERVAL = "interval"  # ISO 8601 time interval start/end
    INSTANT_OR_INTERVAL = "instant_or_interval"


@dataclass(frozen=True)
class Property:
    """A non-navigation property of an entity type.

    ``required``: must be given on create (and PUT). ``nullable``: may be
    ``null``. ``generated``: the server maintains it; clients may send it on
    create but the server overwrites it when its sources change.
    ``column`` is the base column name in the store. ``omit_null``: left out
    of responses when null (``properties``: clients such as frost-sta-client
    and pygeoapi take a present member for an object).
    """

    name: str
    kind: Kind
    column: str
    required: bool = False
    nullable: bool = True
    generated: bool = False
    omit_null: bool = False


@dataclass(frozen=True)
class Relation:
    """A navigation property.

    Exactly one side of every relation says how it is stored: ``fk`` (a column
    of this type's table holding the target's id) or ``link`` (a link table
    ``(table, column of this side, column of the target side)``). The other
    side only names its ``inverse``.
    """

    name: str
    target: str
    many: bool
    inverse: str
    required: bool = False
    fk: str | None = None
    link: tuple[str, str, str] | None = None
    one_of: str = ""  # relations of a type with the same one_of: exactly one of them is set


@dataclass(frozen=True, eq=False)  # one object per type: identity is equality, and hashing is cheap
class EntityType:
    name: str
    set_name: str
    table: str
    properties: tuple[Property, ...]
    relations: tuple[Relation, ...]
    _props: dict[str, Property] = field(default_factory=dict, compare=False, repr=False)
    _rels: dict[str, Relation] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._props.update({p.name: p for p in self.properties})
        self._rels.update({r.name: r for r in self.relations})

    def property(self, name: str) -> Property | None:
        return self._props.get(name)

    def relation(self, name: str) -> Relation | None:
        return self._rels.get(name)


@dataclass(frozen=True)
class FkOnSource:
    """The relation's source table holds the target id in ``column``."""

    column: str


@dataclass(frozen=True)
class FkOnTarget:
    """The target table holds the source id in ``column``."""

    column: str


@dataclass(frozen=True)
class LinkTable:
    table: str
    source_column: str
    target_column: str


Storage = FkOnSource | FkOnTarget | LinkTable


class Registry:
    """All entity types of a service, by type name and by entity-set name."""

    def __init__(self, types: Iterable[EntityType]) -> None:
        self.types: dict[str, EntityType] = {}
        self.sets: dict[str, EntityType] = {}
        for t in types:
            self.types[t.name] = t
            self.sets[t.set_name] = t
        self._check()
        self.memo: dict[str, dict[Any, Any]] = {}
        """Derived data kept by the modules that work on the registry (parsed paths, …)."""
        self._storage = {id(rel): self._find_storage(rel) for t in self.types.values() for rel in t.relations}

    def __iter__(self) -> Iterator[EntityType]:
        return iter(self.types.values())

    def target(self, rel: Relation) -> EntityType:
        return self.types[rel.target]

    def inverse(self, rel: Relation) -> Relation:
        inv = self.target(rel).relation(rel.inverse)
        assert inv is not None
        return inv

    def storage(self, rel: Relation) -> Storage:
        """How ``rel`` is stored, seen from its source side."""
        found = self._storage.get(id(rel))
        return found if found is not None else self._find_storage(rel)

    def _find_storage(self, rel: Relation) -> Storage:
        if rel.fk is not None:
            return FkOnSource(rel.fk)
        if rel.link is not None:
            return LinkTable(*rel.link)
        inv = self.inverse(rel)
        if inv.fk is not None:
            return FkOnTarget(inv.fk)
        assert inv.link is not None
        table, inv_source, inv_target = inv.link
        return LinkTable(table, inv_target, inv_source)

    def _check(self) -> None:
        for t in self.types.values():
            for rel in t.relations:
                inv = self.target(rel).relation(rel.inverse)
                if inv is None or inv.inverse != rel.name or inv.target != t.name:
                    raise ValueError(f"{t.name}.{rel.name}: inverse {rel.inverse} does not match")
                stored = [r for r in (rel, inv) if r.fk is not None or r.link is not None]
                if len(stored) != 1:
                    raise ValueError(f"{t.name}.{rel.name}: exactly one side must declare storage")


def _common(*extra: Property, name: bool = True, description: bool = True) -> tuple[Property, ...]:
    props: list[Property] = []
    if name:
        props.append(Property("name", Kind.STRING, "name", required=True, nullable=False))
    if description:
        props.append(Property("description", Kind.STRING, "description", required=True, nullable=False))
    return (*props, *extra)


_PROPERTIES = Property("properties", Kind.OBJECT, "properties", omit_null=True)
_ENCODING = Property("encodingType", Kind.URI, "encoding_type", required=True, nullable=False)

THING = EntityType(
    "Thing",
    "Things",
    "things",
    _common(_PROPERTIES),
    (
        Relation("Locations", "Location", True, "Things", link=("thing_locations", "thing_id", "location_id")),
        Relation("HistoricalLocations", "HistoricalLocation", True, "Thing"),
        Relation("Datastreams", "Datastream", True, "Thing"),
        Relation("MultiDatastreams", "MultiDatastream", True, "Thing"),
    ),
)

LOCATION = EntityType(
    "Location",
    "Locations",
    "locations",
    _common(
        _ENCODING,
        Property("location", Kind.GEOMETRY, "location", required=True, nullable=False),
        _PROPERTIES,
    ),
    (
        Relation("Things", "Thing", True, "Locations"),
        Relation(
            "HistoricalLocations",
            "HistoricalLocation",
            True,
            "Locations",
            link=("location_historical_locations", "location_id", "historical_location_id"),
        ),
    ),
)

HISTORICAL_LOCATION = EntityType(
    "HistoricalLocation",
    "HistoricalLocations",
    "historical_locations",
    (Property("time", Kind.INSTANT, "time", required=True, nullable=False),),
    (
        Relation("Thing", "Thing", False, "HistoricalLocations", required=True, fk="thing_id"),
        Relation("Locations", "Location", True, "HistoricalLocations"),
    ),
)

DATASTREAM = EntityType(
    "Datastream",
    "Datastreams",
    "datastreams",
    _common(
        Property("unitOfMeasurement", Kind.OBJECT, "unit_of_measurement", required=True, nullable=False),
        Property("observationType", Kind.URI, "observation_type", required=True, nullable=False),
        Property("observedArea", Kind.GEOMETRY, "observed_area", generated=True),
        Property("phenomenonTime", Kind.INTERVAL, "phenomenon_time", generated=True),
        Property("resultTime", Kind.INTERVAL, "result_time", generated=True),
        _PROPERTIES,
    ),
    (
        Relation("Thing", "Thing", False, "Datastreams", required=True, fk="thing_id"),
        Relation("Sensor", "Sensor", False, "Datastreams", required=True, fk="sensor_id"),
        Relation(
            "ObservedProperty", "ObservedProperty", False, "Datastreams", required=True, fk="observed_property_id"
        ),
        Relation("Observations", "Observation", True, "Datastream"),
    ),
)

SENSOR = EntityType(
    "Sensor",
    "Sensors",
    "sensors",
    _common(
        _ENCODING,
        Property("metadata", Kind.ANY, "metadata", required=True, nullable=False),
        _PROPERTIES,
    ),
    (
        Relation("Datastreams", "Datastream", True, "Sensor"),
        Relation("MultiDatastreams", "MultiDatastream", True, "Sensor"),
    ),
)

OBSERVED_PROPERTY = EntityType(
    "ObservedProperty",
    "ObservedProperties",
    "observed_properties",
    (
        Property("name", Kind.STRING, "name", required=True, nullable=False),
        Property("definition", Kind.URI, "definition", required=True, nullable=False),
        Property("description", Kind.STRING, "description", required=True, nullable=False),
        _PROPERTIES,
    ),
    (
        Relation("Datastreams", "Datastream", True, "ObservedProperty"),
        Relation("MultiDatastreams", "MultiDatastream", True, "ObservedProperties"),
    ),
)

OBSERVATION = EntityType(
    "Observation",
    "Observations",
    "observations",
    (
        Property("phenomenonTime", Kind.INSTANT_OR_INTERVAL, "phenomenon_time", nullable=False),
        Property("resultTime", Kind.INSTANT, "result_time"),
        Property("result", Kind.ANY, "result", required=True),
        Property("resultQuality", Kind.ANY, "result_quality"),
        Property("validTime", Kind.INTERVAL, "valid_time"),
        Property("parameters", Kind.OBJECT, "parameters"),
    ),
    (
        # Exactly one of Datastream and MultiDatastream (checked in rules.py).
        Relation("Datastream", "Datastream", False, "Observations", fk="datastream_id", one_of="parent"),
        Relation(
            "MultiDatastream", "MultiDatastream", False, "Observations", fk="multi_datastream_id", one_of="parent"
        ),
        Relation(
            "FeatureOfInterest",
            "FeatureOfInterest",
            False,
            "Observations",
            required=True,
            fk="feature_of_interest_id",
        ),
    ),
)

MULTI_DATASTREAM = EntityType(
    "MultiDatastream",
    "MultiDatastreams",
    "multi_datastreams",
    _common(
        Property("unitOfMeasurements", Kind.ARRAY, "units_of_measurement", required=True, nullable=False),
        Property("observationType", Kind.URI, "observation_type", required=True, nullable=False),
        Property(
            "multiObservationDataTypes", Kind.ARRAY, "multi_observation_data_types", required=True, nullable=False
        ),
        Property("observedArea", Kind.GEOMETRY, "observed_area", generated=True),
        Property("phenomenonTime", Kind.INTERVAL, "phenomenon_time", generated=True),
        Property("resultTime", Kind.INTERVAL, "result_time", generated=True),
        _PROPERTIES,
    ),
    (
        Relation("Thing", "Thing", False, "MultiDatastreams", required=True, fk="thing_id"),
        Relation("Sensor", "Sensor", False, "MultiDatastreams", required=True, fk="sensor_id"),
        Relation(
            "ObservedProperties",
            "ObservedProperty",
            True,
            "MultiDatastreams",
            link=("multi_datastream_observed_properties", "multi_datastream_id", "observed_property_id"),
        ),
        Relation("Observations", "Observation", True, "MultiDatastream"),
    ),
)

FEATURE_OF_INTEREST = EntityType(
    "FeatureOfInterest",
    "FeaturesOfInterest",
    "features_of_interest",
    _common(
        _ENCODING,
        Property("feature", Kind.GEOMETRY, "feature", required=True, nullable=False),
        _PROPERTIES,
    ),
    (Relation("Observations", "Observation", True, "FeatureOfInterest"),),
)

SENSING_TYPES = (
    THING,
    LOCATION,
    HISTORICAL_LOCATION,
    DATASTREAM,
    SENSOR,
    OBSERVED_PROPERTY,
    OBSERVATION,
    FEATURE_OF_INTEREST,
    MULTI_DATASTREAM,
)


def sensing_registry() -> Registry:
    """The registry of SensorThings 1.1 Sensing, with the MultiDatastream extension."""
    return Registry(SENSING_TYPES)
