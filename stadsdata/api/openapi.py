"""The OpenAPI 3.1 document of the API, generated from the entity registry, and its documentation page.

- ``GET /v1.1/api``: the OpenAPI document (JSON). Paths, parameters and schemas are derived from
  the registry: every entity set, every entity, every navigation property one level deep, the
  properties and ``$value``, the ``$ref`` paths, plus ``CreateObservations`` and ``$batch``.
  ``servers`` names the service root as clients reach it (``Settings.base_url`` when set).
- ``GET /v1.1/api.html``: Swagger UI on that document, from the files bundled in
  ``stadsdata/api/static`` (swagger-ui-dist, Apache-2.0), served under ``/v1.1/api-assets/``;
  the page loads nothing from other hosts.

The status codes are the ones the handlers in ``app.py`` return: 200/201/204 for success, and the
``STAError`` codes of ``errors.py`` (400, 404, 409, 413, 415), all with the same JSON error body.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from stadsdata.model.entities import EntityType, Kind, Property, Registry, Relation

STATIC = Path(__file__).parent / "static"
OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
DATA_ARRAY_TYPE = "Observation"  # the type whose collections may be read as $resultFormat=dataArray and $apply
MAX_ID = 10**18 - 1  # ids are at most 18 digits in a path (query/path.py)
INT_MAX = 2**63 - 1

Schema = dict[str, Any]


def _ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: Schema) -> Schema:
    if set(schema) == {"type"} and isinstance(schema["type"], str):
        return {"type": [schema["type"], "null"]}
    if not schema:  # any value already includes null
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


# -- values ---------------------------------------------------------------------------------


def value_schema(kind: Kind) -> Schema:
    """The JSON schema of a non-null value of a property of ``kind``."""
    if kind in (Kind.STRING, Kind.URI):
        return {"type": "string"}
    if kind is Kind.OBJECT:
        return {"type": "object"}
    if kind is Kind.ARRAY:
        return {"type": "array"}
    if kind is Kind.ANY:
        return {}
    if kind is Kind.GEOMETRY:
        return _ref("GeoJSON")
    if kind is Kind.INSTANT:
        return _ref("TimeInstant")
    if kind is Kind.INTERVAL:
        return _ref("TimeInterval")
    return _ref("TimeInstantOrInterval")


def _property_schema(prop: Property, nullable: bool) -> Schema:
    schema = value_schema(prop.kind)
    if prop.kind is Kind.ANY and not nullable:
        schema = {"type": ["string", "number", "boolean", "object", "array"]}
    return _nullable(schema) if nullable else schema


def _geojson_schemas() -> dict[str, Schema]:
    position: Schema = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 3,
        "description": "A position: longitude, latitude and optionally altitude.",
    }

    def nested(depth: int) -> Schema:
        schema = position
        for _ in range(depth):
            schema = {"type": "array", "items": schema}
        return schema

    depths = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
    out: dict[str, Schema] = {}
    for name, depth in depths.items():
        out[f"GeoJSON{name}"] = {
            "type": "object",
            "properties": {"type": {"const": name}, "coordinates": nested(depth)},
            "required": ["type", "coordinates"],
        }
    out["GeoJSONGeometryCollection"] = {
        "type": "object",
        "properties": {
            "type": {"const": "GeometryCollection"},
            "geometries": {
                "type": "array",
                "items": {"type": "object", "required": ["type"], "description": "A GeoJSON geometry."},
            },
        },
        "required": ["type", "geometries"],
    }
    geometry = {"anyOf": [_ref(f"GeoJSON{n}") for n in (*depths, "GeometryCollection")]}
    out["GeoJSONGeometry"] = geometry
    out["GeoJSONFeature"] = {
        "type": "object",
        "properties": {
            "type": {"const": "Feature"},
            "geometry": _ref("GeoJSONGeometry"),
            "properties": {"type": ["object", "null"]},
        },
        "required": ["type", "geometry"],
    }
    out["GeoJSON"] = {
        "description": "A GeoJSON geometry or Feature (RFC 7946), as sent; coordinates in WGS 84.",
        "anyOf": [_ref("GeoJSONGeometry"), _ref("GeoJSONFeature")],
    }
    return out


def _common_schemas() -> dict[str, Schema]:
    link = {"type": "string", "description": "An absolute URL on this server."}
    schemas: dict[str, Schema] = {
        "Error": {
            "type": "object",
            "description": "Every error: a stable code, a message that says what was wrong, and details "
            "such as field (the JSON path of a bad member), option and position (of a bad query option).",
            "properties": {
                "code": {"type": "string", "examples": ["bad-request", "invalid-query", "invalid-entity"]},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "option": {"type": "string"},
                "position": {"type": "integer"},
                "content_type": {"type": "string"},
            },
            "required": ["code", "message"],
        },
        "TimeInstant": {
            "type": "string",
            "format": "date-time",
            "description": "An ISO 8601 instant; without an offset it is UTC. Answers are in UTC with Z.",
            "examples": ["2026-11-22T10:00:00Z"],
        },
        "TimeInterval": {
            "type": "string",
            "pattern": "^[^/]+/[^/]+$",
            "description": "An ISO 8601 interval start/end of two instants, start not after end.",
            "examples": ["2026-11-22T10:00:00Z/2026-11-22T11:00:00Z"],
        },
        "TimeInstantOrInterval": {"anyOf": [_ref("TimeInstant"), _ref("TimeInterval")]},
        "EntityId": {
            "type": "object",
            "description": "A link to an existing entity.",
            "properties": {"@iot.id": {"type": "integer", "minimum": 0, "maximum": INT_MAX}},
            "required": ["@iot.id"],
            "additionalProperties": False,
        },
        "EntityReference": {
            "type": "object",
            "description": "A link to an existing entity, by id or by its URL.",
            "properties": {
                "@iot.id": {"type": "integer", "minimum": 0, "maximum": INT_MAX},
                "@iot.selfLink": link,
            },
            "minProperties": 1,
            "additionalProperties": False,
        },
        "SelfLink": {
            "type": "object",
            "properties": {"@iot.selfLink": link},
            "required": ["@iot.selfLink"],
            "additionalProperties": False,
        },
        "SelfLinkCollection": {
            "type": "object",
            "properties": {
                "@iot.count": {"type": "integer"},
                "@iot.nextLink": link,
                "value": {"type": "array", "items": _ref("SelfLink")},
            },
            "required": ["value"],
            "additionalProperties": False,
        },
        "PropertyValue": {
            "type": "object",
            "description": "One member: the property's name and its value.",
            "minProperties": 1,
            "maxProperties": 1,
        },
        "DataArray": {
            "type": "object",
            "description": "Observations of one Datastream or MultiDatastream as rows of the components.",
            "properties": {
                "Datastream@iot.navigationLink": link,
                "MultiDatastream@iot.navigationLink": link,
                "components": {"type": "array", "items": {"type": "string"}},
                "dataArray@iot.count": {"type": "integer"},
                "dataArray": {"type": "array", "items": {"type": "array"}},
            },
            "required": ["components", "dataArray"],
            "additionalProperties": False,
        },
        "AggregatedRow": {
            "type": "object",
            "description": (
                "One group of a $apply: each group key and aggregate under the name given with 'as'"
                " (bucket starts as ISO 8601 text, averages and sums as numbers or null, counts as integers);"
                ' a grouped path such as Datastream/@iot.id is nested: {"Datastream": {"@iot.id": 7}}.'
            ),
            "additionalProperties": {
                "anyOf": [
                    {"type": ["string", "number", "null"]},
                    {"type": "object", "properties": {"@iot.id": {"type": "integer"}}, "required": ["@iot.id"]},
                ]
            },
        },
        "JsonPatch": {
            "type": "array",
            "description": "A JSON Patch (RFC 6902) applied to the entity's properties.",
            "items": {
                "type": "object",
                "properties": {
                    "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                    "path": {"type": "string"},
                    "from": {"type": "string"},
                    "value": {},
                },
                "required": ["op", "path"],
            },
        },
        "ServiceRoot": {
            "type": "object",
            "properties": {
                "value": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "url": link},
                        "required": ["name", "url"],
                    },
                },
                "serverSettings": {
                    "type": "object",
                    "properties": {"conformance": {"type": "array", "items": {"type": "string"}}},
                },
            },
            "required": ["value", "serverSettings"],
        },
        "CreateObservationsRequest": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "Datastream": _ref("EntityId"),
                    "MultiDatastream": _ref("EntityId"),
                    "components": {
                        "type": "array",
                        "items": {
                            "enum": [
                                "phenomenonTime",
                                "result",
                                "resultTime",
                                "resultQuality",
                                "validTime",
                                "parameters",
                                "FeatureOfInterest/id",
                            ]
                        },
                        "minItems": 1,
                    },
                    "dataArray@iot.count": {"type": "integer"},
                    "dataArray": {"type": "array", "items": {"type": "array"}},
                },
                "required": ["components", "dataArray"],
            },
        },
        "CreateObservationsResponse": {
            "type": "array",
            "description": "One item per row, in order: the selfLink of the created Observation, or 'error' "
            "and a reason for a row that was refused.",
            "items": {"type": "string"},
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "requests": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "minLength": 1},
                            "method": {"enum": ["GET", "POST", "PATCH", "PUT", "DELETE"]},
                            "url": {"type": "string", "minLength": 1},
                            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                            "body": {},
                            "atomicityGroup": {"type": "string"},
                            "dependsOn": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["method", "url"],
                    },
                }
            },
            "required": ["requests"],
        },
        "BatchResponse": {
            "type": "object",
            "properties": {
                "responses": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"type": "integer"},
                            "atomicityGroup": {"type": "string"},
                            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                            "body": {},
                        },
                        "required": ["id", "status"],
                    },
                }
            },
            "required": ["responses"],
        },
    }
    schemas.update(_geojson_schemas())
    return schemas


# -- entity schemas -------------------------------------------------------------------------


def _expanded_items(registry: Registry, rel: Relation) -> Schema:
    target = registry.target(rel)
    if target.name == DATA_ARRAY_TYPE:
        return {"anyOf": [_ref(target.name), _ref("DataArray")]}
    return _ref(target.name)


def entity_schema(registry: Registry, t: EntityType) -> Schema:
    """An entity as the server writes it; every member may be left out by $select."""
    link = {"type": "string"}
    props: Schema = {"@iot.id": {"type": "integer"}, "@iot.selfLink": link}
    for p in t.properties:
        props[p.name] = _property_schema(p, p.nullable and not p.omit_null)
    for rel in t.relations:
        props[f"{rel.name}@iot.navigationLink"] = link
        target = _expanded_items(registry, rel)
        props[rel.name] = {"type": "array", "items": target} if rel.many else _nullable(target)
        if rel.many:
            props[f"{rel.name}@iot.count"] = {"type": "integer"}
            props[f"{rel.name}@iot.nextLink"] = link
    return {
        "type": "object",
        "description": f"A {t.name}. Navigation properties appear as …@iot.navigationLink, "
        "or with their content when named in $expand.",
        "properties": props,
        "additionalProperties": False,
    }


def collection_schema(registry: Registry, t: EntityType) -> Schema:
    items = _ref(t.name)
    if t.name == DATA_ARRAY_TYPE:
        items = {"anyOf": [items, _ref("DataArray"), _ref("AggregatedRow")]}
    return {
        "type": "object",
        "properties": {
            "@iot.count": {"type": "integer"},
            "@iot.nextLink": {"type": "string"},
            "value": {"type": "array", "items": items},
        },
        "required": ["value"],
        "additionalProperties": False,
    }


def input_schema(registry: Registry, t: EntityType, *, partial: bool) -> Schema:
    """A request body for ``t``: on create and PUT (``partial`` False) the required properties must be given."""
    props: Schema = {}
    for p in t.properties:
        props[p.name] = _property_schema(p, p.nullable)
    for rel in t.relations:
        target = registry.target(rel)
        link = {"anyOf": [_ref("EntityId"), _ref(f"{target.name}Create")]}
        props[rel.name] = {"type": "array", "items": link} if rel.many else link
    needs = [r.name for r in t.relations if r.required]
    one_of = sorted({r.one_of for r in t.relations if r.one_of})
    alternatives = [" or ".join(r.name for r in t.relations if r.one_of == group) for group in one_of]
    text = f"A {t.name} to {'update' if partial else 'create'}. Related entities are linked with "
    text += '{"@iot.id": …} or created along (deep insert).'
    if not partial and (needs or alternatives):
        text += f" A new {t.name} must be linked to its {', '.join([*needs, *alternatives])}"
        text += " (given here, or implied by the path it is created at)."
    schema: Schema = {"type": "object", "description": text, "properties": props, "additionalProperties": False}
    if not partial:
        schema["required"] = [p.name for p in t.properties if p.required]
    return schema


# -- operations -----------------------------------------------------------------------------

_OPTIONS: dict[str, Schema] = {
    "filter": {"name": "$filter", "schema": {"type": "string"}, "description": "Keep the entities that match."},
    "orderby": {"name": "$orderby", "schema": {"type": "string"}, "description": "Sort: expr [asc|desc], …"},
    "top": {
        "name": "$top",
        "schema": {"type": "integer", "minimum": 0, "maximum": INT_MAX},
        "description": "At most this many entities (capped by the server's max_top).",
    },
    "skip": {
        "name": "$skip",
        "schema": {"type": "integer", "minimum": 0, "maximum": INT_MAX},
        "description": "Leave out the first entities.",
    },
    "count": {
        "name": "$count",
        "schema": {"type": "boolean"},
        "description": "With true, @iot.count gives the number of matching entities.",
    },
    "select": {"name": "$select", "schema": {"type": "string"}, "description": "The members to return."},
    "expand": {
        "name": "$expand",
        "schema": {"type": "string"},
        "description": "Related entities to include, with their own options: Datastreams($top=1;$expand=Sensor)",
    },
    "resultFormat": {
        "name": "$resultFormat",
        "schema": {"enum": ["dataArray"]},
        "description": "dataArray: Observations as rows per Datastream (SensorThings 1.1 §14).",
    },
    "apply": {
        "name": "$apply",
        "schema": {"type": "string"},
        "description": (
            "Aggregate the Observations (OData $apply, docs/api.md): filter(...) steps, then"
            " groupby((bucket(phenomenonTime,duration'PT1H','Europe/Amsterdam') as hour[,Datastream/@iot.id]),"
            " aggregate(result with average|min|max|sum as name, $count as name)) or aggregate(...)."
        ),
    },
    "skiptoken": {
        "name": "$skiptoken",
        "schema": {"type": "string"},
        "description": "Where the next page starts; only as given in an @iot.nextLink.",
    },
}
_COLLECTION_OPTIONS = ("filter", "orderby", "top", "skip", "count", "select", "expand", "skiptoken")
_REF_OPTIONS = ("filter", "orderby", "top", "skip", "count", "skiptoken")


def _parameters() -> dict[str, Schema]:
    params: dict[str, Schema] = {key: {**value, "in": "query", "required": False} for key, value in _OPTIONS.items()}
    id_schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
    params["id"] = {"name": "id", "in": "path", "required": True, "schema": id_schema}
    params["relatedId"] = {"name": "relatedId", "in": "path", "required": True, "schema": id_schema}
    return params


def _error(description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


_ERRORS = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "409": "Conflict",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
}


def _error_responses() -> dict[str, Schema]:
    return {
        "BadRequest": _error(
            "A malformed path, query option or body (codes bad-request, invalid-query, invalid-entity)."
        ),
        "Unauthorized": _error(
            "With access control on: no token where one is needed, or a token that is unknown, expired or revoked."
        ),
        "Forbidden": _error("With access control on: the caller may see the entity but not change it."),
        "NotFound": _error(
            "No such entity set, entity or navigation property (with access control on: or one the caller may not see)."
        ),
        "Conflict": _error("The change would leave an entity without a link it needs."),
        "PayloadTooLarge": _error("The body is larger than the server's max_body_bytes."),
        "UnsupportedMediaType": _error("The Content-Type is not one this operation takes."),
    }


def _responses(success: dict[str, Schema], *errors: str) -> dict[str, Schema]:
    out = dict(success)
    for status in (*errors, "401", "403"):  # every operation: access control (docs/access.md)
        out[status] = _ref(_ERRORS[status], "responses")
    return out


def _json(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    out: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _body(schema: Schema, extra: dict[str, Schema] | None = None) -> Schema:
    return {"required": True, "content": {JSON: {"schema": schema}, **(extra or {})}}


def _op(op_id: str, summary: str, tag: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {"operationId": op_id, "summary": summary, "tags": [tag], **extra, "responses": responses}


def _options(*names: str) -> list[Schema]:
    return [_ref(n, "parameters") for n in names]


class _Builder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.paths: dict[str, Schema] = {}

    def add(self, path: str, method: str, op: Schema, params: list[Schema] | None = None) -> None:
        item = self.paths.setdefault(path, {})
        if params and "parameters" not in item:
            item["parameters"] = params
        item[method] = op

    def collection(self, path: str, t: EntityType, key: str, tag: str, params: list[Schema], what: str) -> None:
        """GET and POST on a collection of ``t`` (an entity set or a to-many navigation property)."""
        names = _COLLECTION_OPTIONS + (("resultFormat", "apply") if t.name == DATA_ARRAY_TYPE else ())
        self.add(
            path,
            "get",
            _op(
                f"list{key}",
                f"Read {what}",
                tag,
                _responses({"200": _json(f"A page of {t.set_name}", _ref(f"{t.name}Collection"))}, "400", "404"),
                parameters=_options(*names),
            ),
            params,
        )
        location = {"Location": {"description": "The URL of the new entity", "schema": {"type": "string"}}}
        self.add(
            path,
            "post",
            _op(
                f"create{key}",
                f"Create a {t.name} in {what}",
                tag,
                _responses({"201": _json(f"The new {t.name}", _ref(t.name), location)}, "400", "404", "413", "415"),
                requestBody=_body(_ref(f"{t.name}Create")),
            ),
        )

    def entity(self, path: str, t: EntityType, key: str, tag: str, params: list[Schema], what: str) -> None:
        """GET, PATCH, PUT and DELETE on one entity of ``t``."""
        self.add(
            path,
            "get",
            _op(
                f"get{key}",
                f"Read {what}",
                tag,
                _responses({"200": _json(f"The {t.name}", _ref(t.name))}, "400", "404"),
                parameters=_options("select", "expand"),
            ),
            params,
        )
        patch_body = _body(_ref(f"{t.name}Patch"), {JSON_PATCH: {"schema": _ref("JsonPatch")}})
        updated = {"200": _json(f"The updated {t.name}", _ref(t.name))}
        self.add(
            path,
            "patch",
            _op(
                f"update{key}",
                f"Update members of {what}",
                tag,
                _responses(updated, "400", "404", "413", "415"),
                requestBody=patch_body,
            ),
        )
        self.add(
            path,
            "put",
            _op(
                f"replace{key}",
                f"Replace {what}",
                tag,
                _responses(updated, "400", "404", "413", "415"),
                requestBody=_body(_ref(f"{t.name}Create")),
            ),
        )
        self.add(
            path,
            "delete",
            _op(
                f"delete{key}",
                f"Delete {what}",
                tag,
                _responses({"200": {"description": "Deleted; no body"}}, "400", "404"),
            ),
        )

    def properties(self, base: str, t: EntityType, key: str, tag: str, params: list[Schema]) -> None:
        prop = {
            "name": "property",
            "in": "path",
            "required": True,
            "schema": {"enum": [p.name for p in t.properties]},
        }
        self.add(
            f"{base}/{{property}}",
            "get",
            _op(
                f"get{key}Property",
                f"Read one property of a {t.name}",
                tag,
                _responses({"200": _json("The property, as one member", _ref("PropertyValue"))}, "400", "404"),
            ),
            [*params, prop],
        )
        self.add(
            f"{base}/{{property}}/$value",
            "get",
            _op(
                f"get{key}PropertyValue",
                f"Read the raw value of one property of a {t.name}",
                tag,
                _responses(
                    {
                        "200": {
                            "description": "The value as text (JSON for objects and numbers)",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "204": {"description": "The property is null"},
                    },
                    "400",
                    "404",
                ),
            ),
            [*params, prop],
        )

    def build(self) -> dict[str, Schema]:
        reg = self.registry
        one = [_ref("id", "parameters")]
        two = [*one, _ref("relatedId", "parameters")]
        ref_body = _body(_ref("EntityReference"))
        linked = {"204": {"description": "Linked"}}
        unlinked = {"204": {"description": "Unlinked"}}
        self.add(
            "/",
            "get",
            _op(
                "serviceRoot",
                "The entity sets and the conformance classes",
                "Service",
                {"200": _json("The service root", _ref("ServiceRoot"))},
            ),
        )
        for t in reg:
            s = t.set_name
            tag = s
            self.collection(f"/{s}", t, s, tag, [], f"the {s}")
            self.add(
                f"/{s}/$ref",
                "get",
                _op(
                    f"list{s}Refs",
                    f"The selfLinks of the {s}",
                    tag,
                    _responses({"200": _json("selfLinks", _ref("SelfLinkCollection"))}, "400", "404"),
                    parameters=_options(*_REF_OPTIONS),
                ),
            )
            item = f"/{s}({{id}})"
            self.entity(item, t, t.name, tag, one, f"a {t.name}")
            self.add(
                f"{item}/$ref",
                "get",
                _op(
                    f"get{t.name}Ref",
                    f"The selfLink of a {t.name}",
                    tag,
                    _responses({"200": _json("selfLink", _ref("SelfLink"))}, "400", "404"),
                ),
                one,
            )
            self.properties(item, t, t.name, tag, one)
            for rel in t.relations:
                target = reg.target(rel)
                nav = f"{item}/{rel.name}"
                key = f"{t.name}{rel.name}"
                what = f"the {rel.name} of a {t.name}"
                if rel.many:
                    self.collection(nav, target, key, tag, one, what)
                    self.add(
                        f"{nav}/$ref",
                        "get",
                        _op(
                            f"list{key}Refs",
                            f"The selfLinks of {what}",
                            tag,
                            _responses({"200": _json("selfLinks", _ref("SelfLinkCollection"))}, "400", "404"),
                            parameters=_options(*_REF_OPTIONS),
                        ),
                        one,
                    )
                    self.add(
                        f"{nav}/$ref",
                        "post",
                        _op(
                            f"link{key}",
                            f"Link an existing {target.name} as one of {what}",
                            tag,
                            _responses(linked, "400", "404", "413", "415"),
                            requestBody=ref_body,
                        ),
                    )
                    self.entity(f"{nav}({{relatedId}})", target, f"{key}Item", tag, two, f"one of {what}")
                    self.add(
                        f"{nav}({{relatedId}})/$ref",
                        "delete",
                        _op(
                            f"unlink{key}",
                            f"Remove the link to one of {what}",
                            tag,
                            _responses(unlinked, "400", "404", "409"),
                        ),
                        two,
                    )
                else:
                    self.entity(nav, target, key, tag, one, what)
                    self.add(
                        f"{nav}/$ref",
                        "get",
                        _op(
                            f"get{key}Ref",
                            f"The selfLink of {what}",
                            tag,
                            _responses({"200": _json("selfLink", _ref("SelfLink"))}, "400", "404"),
                        ),
                        one,
                    )
                    self.add(
                        f"{nav}/$ref",
                        "put",
                        _op(
                            f"set{key}",
                            f"Link {what} to an existing {target.name}",
                            tag,
                            _responses(linked, "400", "404", "413", "415"),
                            requestBody=ref_body,
                        ),
                    )
                    self.add(
                        f"{nav}/$ref",
                        "delete",
                        _op(
                            f"unset{key}",
                            f"Remove the link to {what}",
                            tag,
                            _responses(unlinked, "400", "404", "409"),
                        ),
                    )
        self.add(
            "/CreateObservations",
            "post",
            _op(
                "createObservationsInDataArrays",
                "Create Observations in the dataArray format",
                "Operations",
                _responses(
                    {"201": _json("One result per row", _ref("CreateObservationsResponse"))},
                    "400",
                    "404",
                    "413",
                    "415",
                ),
                requestBody=_body(_ref("CreateObservationsRequest")),
            ),
        )
        multipart = {"multipart/mixed": {"schema": {"type": "string"}}}
        self.add(
            "/$batch",
            "post",
            _op(
                "batch",
                "Run several requests in one (OData JSON batch or multipart/mixed)",
                "Operations",
                _responses(
                    {
                        "200": {
                            "description": "One response per request, in the format of the request",
                            "content": {JSON: {"schema": _ref("BatchResponse")}, **multipart},
                        }
                    },
                    "400",
                    "413",
                    "415",
                ),
                requestBody=_body(_ref("BatchRequest"), multipart),
            ),
        )
        return self.paths


def build_document(registry: Registry, title: str = "stadsdata SensorThings API", version: str = "1.1") -> Schema:
    """The OpenAPI 3.1 document of the API over ``registry``, without ``servers`` (added per request)."""
    schemas = _common_schemas()
    for t in registry:
        schemas[t.name] = entity_schema(registry, t)
        schemas[f"{t.name}Collection"] = collection_schema(registry, t)
        schemas[f"{t.name}Create"] = input_schema(registry, t, partial=False)
        schemas[f"{t.name}Patch"] = input_schema(registry, t, partial=True)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "An OGC SensorThings API 1.1 server (Sensing, with MultiDatastream, dataArray and "
            "batch requests). Every error has the body described by the Error schema.",
            "license": {"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        },
        "tags": [{"name": t.set_name} for t in registry] + [{"name": "Operations"}, {"name": "Service"}],
        "paths": _Builder(registry).build(),
        "components": {
            "schemas": schemas,
            "parameters": _parameters(),
            "responses": _error_responses(),
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (sdt_…) or an OpenID "
                    "Connect access token, with access control on (docs/access.md)",
                },
                "basic": {"type": "http", "scheme": "basic", "description": "The API token as the password"},
            },  # fmt: skip
        },
        # Anonymous, or with a token: what each may do depends on the server's access control.
        "security": [{}, {"token": []}, {"basic": []}],
    }


# -- serving --------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>stadsdata SensorThings API</title>
<link rel="stylesheet" href="api-assets/swagger-ui/swagger-ui.css">
<link rel="icon" type="image/png" href="api-assets/swagger-ui/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="api-assets/swagger-ui/swagger-ui-bundle.js"></script>
<script src="api-assets/api.js"></script>
</body>
</html>
"""


class Docs:
    """The handlers of ``/api``, ``/api.html`` and the bundled assets."""

    def __init__(self, registry: Registry, base_url: Callable[[Request], str]) -> None:
        self.base_url = base_url
        self._document = build_document(registry)
        self._bodies: dict[str, bytes] = {}
        self.assets = StaticFiles(directory=STATIC)

    def document_for(self, base: str) -> Schema:
        return {**self._document, "servers": [{"url": base}]}

    async def document(self, request: Request) -> Response:
        base = self.base_url(request)
        body = self._bodies.get(base)
        if body is None:
            if len(self._bodies) > 64:  # the base follows the Host header; keep the memo small
                self._bodies.clear()
            body = self._bodies[base] = orjson.dumps(self.document_for(base))
        return Response(body, media_type=JSON)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE)
