"""Request bodies → checked entity input, generic over the registry.

Every problem raises a ``ValidationError`` whose ``field`` is the JSON path
of the offending member (``Datastreams[0].unitOfMeasurement``) and whose
message says what is expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stadsdata.errors import ValidationError
from stadsdata.model.entities import EntityType, Kind, Property, Registry
from stadsdata.model.values import (
    GeoValue,
    geometry_bounds,
    parse_instant,
    parse_instant_or_interval,
    parse_interval,
)

Mode = Literal["create", "patch", "put"]
MAX_DEPTH = 16


@dataclass(frozen=True)
class Ref:
    """A link to an existing entity (a nested object with ``@iot.id``)."""

    entity: EntityType
    id: int
    field: str


@dataclass
class EntityInput:
    entity: EntityType
    props: dict[str, Any]
    links: dict[str, list[Ref | EntityInput]] = field(default_factory=dict)
    field: str = ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parse_id_value(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(f"{where} must be an integer id", field=where)
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValidationError(f"{where} must be an integer id, not {value!r}", field=where)
        value = int(value)
    if value < 0 or value >= 2**63:
        raise ValidationError(f"{where} is out of range for an id", field=where)
    return value


MAX_JSON_DEPTH = 64


def check_json(value: Any, where: str) -> Any:
    """A free JSON value (properties, result, parameters), refused when it nests too deeply to store."""
    if type(value) is dict or type(value) is list:
        level = [value]
        for _ in range(MAX_JSON_DEPTH):
            level = [
                child
                for item in level
                for child in (item.values() if type(item) is dict else item)
                if type(child) is dict or type(child) is list
            ]
            if not level:
                return value
        raise ValidationError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels", field=where)
    return value


def check_value(prop: Property, value: object, where: str) -> Any:
    """Check one property value and convert it to its internal form."""
    if value is None:
        if not prop.nullable:
            raise ValidationError(f"{where} may not be null", field=where)
        return None
    kind = prop.kind
    if kind in (Kind.STRING, Kind.URI):
        if not isinstance(value, str):
            raise ValidationError(f"{where} must be a string", field=where)
        return value
    if kind is Kind.OBJECT:
        if not isinstance(value, dict):
            raise ValidationError(f"{where} must be a JSON object", field=where)
        return check_json(value, where)
    if kind is Kind.ARRAY:
        if not isinstance(value, list):
            raise ValidationError(f"{where} must be a JSON array", field=where)
        return check_json(value, where)
    if kind is Kind.ANY:
        return check_json(value, where)
    if kind is Kind.GEOMETRY:
        return GeoValue(value, geometry_bounds(value, where))  # type: ignore[arg-type]
    if kind is Kind.INSTANT:
        return parse_instant(value, where)
    if kind is Kind.INTERVAL:
        return parse_interval(value, where)
    return parse_instant_or_interval(value, where)


def _allowed(entity: EntityType) -> str:
    return ", ".join([p.name for p in entity.properties] + [r.name for r in entity.relations])


def parse_entity(
    registry: Registry,
    entity: EntityType,
    body: object,
    mode: Mode,
    where: str = "",
    depth: int = 0,
) -> EntityInput:
    """Check ``body`` as an entity of type ``entity``.

    In ``create`` and ``put`` mode every required property must be present.
    Members with ``@`` in their name are annotations (``@iot.selfLink``,
    ``Datastreams@iot.navigationLink``) and are ignored, so clients can send
    back what they read.
    """
    label = where or entity.name
    if depth > MAX_DEPTH:
        raise ValidationError(f"{label}: nesting deeper than {MAX_DEPTH} levels is not supported", field=label)
    if not isinstance(body, dict):
        raise ValidationError(f"{label} must be a JSON object describing a {entity.name}", field=label)
    props: dict[str, Any] = {}
    links: dict[str, list[Ref | EntityInput]] = {}
    for key, value in body.items():
        if not isinstance(key, str):
            raise ValidationError(f"{label}: member names must be strings", field=label)
        if "@" in key:
            if key == "@iot.id" and value is not None and depth == 0 and mode == "create":
                raise ValidationError(
                    f"{_join(where, '@iot.id')}: ids are assigned by the server; leave @iot.id out",
                    field=_join(where, "@iot.id"),
                )
            continue
        path = _join(where, key)
        prop = entity.property(key)
        if prop is not None:
            props[key] = check_value(prop, value, path)
            continue
        rel = entity.relation(key)
        if rel is None:
            raise ValidationError(
                f"{path}: {entity.name} has no property or relation {key!r}; it has {_allowed(entity)}",
                field=path,
            )
        target = registry.target(rel)
        if rel.many:
            if not isinstance(value, list):
                raise ValidationError(f"{path} must be a JSON array of {target.set_name}", field=path)
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        else:
            if value is None:
                raise ValidationError(f"{path} may not be null; a {entity.name} needs its {key}", field=path)
            items = [(path, value)]
        links[key] = [_nested(registry, target, v, p, depth) for p, v in items]
    if mode != "patch":
        for prop in entity.properties:
            if prop.required and prop.name not in props:
                path = _join(where, prop.name)
                raise ValidationError(f"{path} is missing; a {entity.name} needs it", field=path)
    return EntityInput(entity, props, links, where)


def _nested(registry: Registry, target: EntityType, value: object, where: str, depth: int) -> Ref | EntityInput:
    if isinstance(value, dict) and value.get("@iot.id") is not None:
        return Ref(target, parse_id_value(value["@iot.id"], _join(where, "@iot.id")), where)
    return parse_entity(registry, target, value, "create", where, depth + 1)
