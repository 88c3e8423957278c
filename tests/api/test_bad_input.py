"""Malformed requests: each gets a 4xx with a JSON error that says what is wrong, and changes nothing.

The rule under test (docs/api.md, "Errors"): malformed JSON, unknown or wrongly typed members,
missing required members and links to ids that do not exist are 400; unknown entity sets and ids
404; unsupported methods 405 with ``Allow``; bodies over the limit 413; other media types 415.
No request a client can send may produce a 500.

Known server bugs are kept as ``xfail(strict=True)`` tests at the end of this file.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.settings import Settings
from tests import fixtures as f
from tests.conftest import NO_MQTT

V = "/v1.1"
ENTITY_SETS = (
    "Things",
    "Locations",
    "HistoricalLocations",
    "Datastreams",
    "MultiDatastreams",
    "Sensors",
    "ObservedProperties",
    "Observations",
    "FeaturesOfInterest",
)
REF1 = {"@iot.id": 1}
REF999 = {"@iot.id": 999}
COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"
JSON_PATCH = {"content-type": "application/json-patch+json"}
MULTIPART = {"content-type": "multipart/mixed; boundary=b"}


def valid_body(entity_set: str) -> dict[str, Any]:
    """A body that creates one entity in ``entity_set`` of a ``seeded`` store (links go to ids 1)."""
    bodies: dict[str, dict[str, Any]] = {
        "Things": f.thing(),
        "Locations": f.location(),
        "HistoricalLocations": {"time": "2026-11-22T10:00:00Z", "Thing": dict(REF1)},
        "Datastreams": f.datastream(Thing=dict(REF1), Sensor=dict(REF1), ObservedProperty=dict(REF1)),
        "MultiDatastreams": {
            "name": "level and temperature",
            "description": "two values per observation",
            "unitOfMeasurements": [f.UNIT_M],
            "observationType": COMPLEX,
            "multiObservationDataTypes": [f.MEASUREMENT],
            "Thing": dict(REF1),
            "Sensor": dict(REF1),
            "ObservedProperties": [dict(REF1)],
        },
        "Sensors": f.sensor(),
        "ObservedProperties": f.observed_property(),
        "Observations": {
            "phenomenonTime": "2026-11-22T10:00:00Z",
            "result": 0.42,
            "Datastream": dict(REF1),
            "FeatureOfInterest": dict(REF1),
        },
        "FeaturesOfInterest": {
            "name": "Roombeek 12",
            "description": "the well",
            "encodingType": "application/geo+json",
            "feature": f.POINT,
        },
    }
    return bodies[entity_set]


def _seed(client: TestClient) -> None:
    for entity_set in ("Things", "FeaturesOfInterest", "Observations", "MultiDatastreams"):
        body = f.full_thing() if entity_set == "Things" else valid_body(entity_set)
        r = client.post(f"{V}/{entity_set}", json=body)
        assert r.status_code == 201, r.text


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded SQLite database, made once and copied for each test (creating one costs more than copying)."""
    path = tmp_path_factory.mktemp("template") / "seeded.db"
    app = create_app(Settings(db=str(path), synchronous="NORMAL", **NO_MQTT))
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        _seed(c)
    return path


@pytest.fixture
def seeded(settings: Settings, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A store with entity 1 in every entity set (and the links between them), on every store."""
    is_file = "://" not in settings.db
    if is_file:
        shutil.copyfile(request.getfixturevalue("sqlite_template"), settings.db)
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        if not is_file:
            _seed(c)
        assert counts(c) == dict.fromkeys(ENTITY_SETS, 1)
        yield c


def counts(client: TestClient) -> dict[str, int]:
    """The size of every entity set (read in one $batch: this runs around every rejected write)."""
    requests = [{"id": s, "method": "GET", "url": f"{s}?$count=true&$top=0"} for s in ENTITY_SETS]
    r = client.post(f"{V}/$batch", json={"requests": requests})
    assert r.status_code == 200, r.text
    out = {}
    for response in r.json()["responses"]:
        assert response["status"] == 200, response
        out[response["id"]] = response["body"]["@iot.count"]
    return out


def assert_error(
    r: Any,
    status: int,
    *needles: str,
    field: str | None = None,
    option: str | None = None,
) -> dict[str, Any]:
    """``r`` is a JSON error with ``status``; its message contains every needle."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    for needle in needles:
        assert needle in body["message"], f"{needle!r} not in {body['message']!r}"
    if field is not None:
        assert body.get("field") == field, body
    if option is not None:
        assert body.get("option") == option, body
    return body


def rejected(
    client: TestClient,
    method: str,
    path: str,
    status: int,
    *needles: str,
    field: str | None = None,
    option: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    """Send a write that must be refused; check the error and that no entity set changed."""
    before = counts(client)
    r = client.request(method, V + path, **request)
    body = assert_error(r, status, *needles, field=field, option=option)
    assert counts(client) == before, f"a rejected {method} {path} changed the store"
    return body


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


# -- malformed JSON ----------------------------------------------------------------------

WRITES = [
    ("POST", "/Things"),
    ("POST", "/Observations"),
    ("POST", "/Things(1)/Datastreams"),
    ("PATCH", "/Things(1)"),
    ("PUT", "/Things(1)"),
    ("POST", "/Things(1)/Locations/$ref"),
    ("PUT", "/Datastreams(1)/Sensor/$ref"),
    ("POST", "/CreateObservations"),
    ("POST", "/$batch"),
]

NOT_JSON = [
    pytest.param(b'{"name": "Well", "description": "x"', id="truncated"),
    pytest.param(b'{"name": "Well",}', id="trailing-comma"),
    pytest.param(b'{"name": "a", "description": "b"} {}', id="trailing-garbage"),
    pytest.param(b"{'name': 'a', 'description': 'b'}", id="single-quotes"),
    pytest.param(b"name=a&description=b", id="form-encoded"),
    pytest.param(b'{"name": "a", "description": "b", "properties": {"x": NaN}}', id="nan"),
    pytest.param(b'{"name": "a", "description": "b", "properties": {"x": 1e400}}', id="infinite-number"),
    pytest.param('{"name": "Café", "description": "b"}'.encode("latin-1"), id="latin-1-bytes"),
    pytest.param('{"name": "a", "description": "b"}'.encode("utf-16"), id="utf-16"),
    pytest.param(b'\xff\xfe\x00{"name": "a"}', id="binary-garbage"),
    pytest.param(b'{"name": "\\ud800", "description": "b"}', id="lone-surrogate-escape"),
    pytest.param(b"[" * 2000 + b"]" * 2000, id="nesting-beyond-parser-limit"),
]


def _assert_json_error_position(body: dict[str, Any]) -> None:
    assert isinstance(body.get("position"), int) and body["position"] >= 0, body


@pytest.mark.parametrize("raw", NOT_JSON)
def test_malformed_json_is_400_with_position(seeded: TestClient, raw: bytes) -> None:
    body = rejected(seeded, "POST", "/Things", 400, "not valid JSON", "line", "column", field="body", content=raw)
    _assert_json_error_position(body)


@pytest.mark.parametrize("raw", [NOT_JSON[0], NOT_JSON[7]])
@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m}-{p}" for m, p in WRITES])
def test_malformed_json_is_400_on_every_write(seeded: TestClient, method: str, path: str, raw: bytes) -> None:
    body = rejected(seeded, method, path, 400, "not valid JSON", "line", "column", field="body", content=raw)
    _assert_json_error_position(body)


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m}-{p}" for m, p in WRITES])
def test_blank_body_is_400(seeded: TestClient, method: str, path: str) -> None:
    rejected(seeded, method, path, 400, "empty", field="body", content=b"   \n\t ")


def test_empty_body_is_400(seeded: TestClient) -> None:
    rejected(seeded, "POST", "/Things", 400, "empty", field="body", content=b"")


@pytest.mark.parametrize(
    "value",
    [pytest.param(v, id=i) for i, v in [("string", "hello"), ("number", 42), ("null", None), ("true", True)]]
    + [pytest.param([], id="empty-array")],
)
def test_body_that_is_not_an_object_is_400(seeded: TestClient, value: object) -> None:
    rejected(seeded, "POST", "/Things", 400, "must be a JSON object", field="Thing", content=json.dumps(value))


@pytest.mark.parametrize("entity_set", ENTITY_SETS)
def test_array_of_entities_where_one_is_expected_is_400(seeded: TestClient, entity_set: str) -> None:
    rejected(seeded, "POST", f"/{entity_set}", 400, "must be a JSON object", json=[valid_body(entity_set)])


@pytest.mark.parametrize("entity_set", ENTITY_SETS)
def test_valid_bodies_are_accepted(seeded: TestClient, entity_set: str) -> None:
    """The control for every case below: the unmodified body creates an entity."""
    r = seeded.post(f"{V}/{entity_set}", json=valid_body(entity_set))
    assert r.status_code == 201, r.text
    assert counts(seeded)[entity_set] == 2


@pytest.mark.parametrize(
    ("entity_set", "change", "field", "needle"),
    [
        ("Things", {"Locations": f.location()}, "Locations", "JSON array of Locations"),
        ("Things", {"Locations": [5]}, "Locations[0]", "JSON object"),
        ("Things", {"Locations": [None]}, "Locations[0]", "JSON object"),
        ("Things", {"Datastreams": "none"}, "Datastreams", "JSON array"),
        ("Datastreams", {"Thing": [dict(REF1)]}, "Thing", "JSON object"),
        ("Datastreams", {"Thing": None}, "Thing", "may not be null"),
        ("Observations", {"Datastream": "1"}, "Datastream", "JSON object"),
        ("MultiDatastreams", {"ObservedProperties": dict(REF1)}, "ObservedProperties", "JSON array"),
    ],
)
def test_wrongly_shaped_relations_are_400(
    seeded: TestClient, entity_set: str, change: dict[str, Any], field: str, needle: str
) -> None:
    body = {**valid_body(entity_set), **change}
    rejected(seeded, "POST", f"/{entity_set}", 400, needle, field=field, json=body)


# -- unknown members -----------------------------------------------------------------------


UNKNOWN_KEYS = [(s, "foo") for s in ENTITY_SETS] + [
    ("Things", "Name"),
    ("Things", "iot.id"),
    ("Things", "Datastream"),
    ("Observations", "Datastreams"),
    ("Datastreams", "thing"),
    ("Locations", "geometry"),
]


@pytest.mark.parametrize(("entity_set", "key"), UNKNOWN_KEYS)
def test_unknown_member_is_400_and_named(seeded: TestClient, entity_set: str, key: str) -> None:
    body = {**valid_body(entity_set), key: 1}
    rejected(seeded, "POST", f"/{entity_set}", 400, repr(key), "has no property or relation", field=key, json=body)


def test_unknown_member_deep_in_a_deep_insert_is_named_by_its_path(seeded: TestClient) -> None:
    thing = f.full_thing()
    thing["Datastreams"][0]["Sensor"]["colour"] = "red"
    rejected(seeded, "POST", "/Things", 400, "'colour'", field="Datastreams[0].Sensor.colour", json=thing)


@pytest.mark.parametrize("entity_set", ENTITY_SETS)
def test_client_chosen_id_is_400(seeded: TestClient, entity_set: str) -> None:
    body = {**valid_body(entity_set), "@iot.id": 77}
    rejected(seeded, "POST", f"/{entity_set}", 400, "assigned by the server", field="@iot.id", json=body)


@pytest.mark.parametrize("entity_set", ["Things", "Sensors", "Observations"])
def test_unknown_member_in_patch_and_put_is_400_and_nothing_changes(seeded: TestClient, entity_set: str) -> None:
    before = seeded.get(f"{V}/{entity_set}(1)").json()
    rejected(seeded, "PATCH", f"/{entity_set}(1)", 400, "'foo'", field="foo", json={"foo": 1})
    rejected(seeded, "PUT", f"/{entity_set}(1)", 400, "'foo'", field="foo", json={**valid_body(entity_set), "foo": 1})
    assert seeded.get(f"{V}/{entity_set}(1)").json() == before


# -- wrongly typed members -------------------------------------------------------------------

WRONG_TYPES = [
    ("Things", "name", 5, "must be a string"),
    ("Things", "name", None, "may not be null"),
    ("Things", "description", ["a"], "must be a string"),
    ("Things", "properties", "x", "must be a JSON object"),
    ("Things", "properties", [], "must be a JSON object"),
    ("Locations", "location", "x", "GeoJSON"),
    ("Locations", "location", {"type": "Circle", "coordinates": [1, 2]}, "GeoJSON"),
    ("Locations", "location", {"type": "Point", "coordinates": "x"}, "GeoJSON"),
    ("Locations", "location", {"type": "Point"}, "GeoJSON"),
    ("Locations", "location", {"type": "Point", "coordinates": []}, "position"),
    ("Locations", "location", {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "GeoJSON"),
    ("Locations", "location", {"type": "Feature", "geometry": 5}, "geometry"),
    ("Locations", "encodingType", 5, "must be a string"),
    ("HistoricalLocations", "time", "yesterday", "ISO 8601"),
    ("HistoricalLocations", "time", None, "may not be null"),
    ("Datastreams", "unitOfMeasurement", [], "must be a JSON object"),
    ("Datastreams", "unitOfMeasurement", "m", "must be a JSON object"),
    ("Datastreams", "observationType", 5, "must be a string"),
    ("Datastreams", "phenomenonTime", "yesterday", "ISO 8601"),
    ("Datastreams", "phenomenonTime", "2026-11-23T00:00:00Z/2026-11-22T00:00:00Z", "ends before it starts"),
    ("Datastreams", "observedArea", "x", "GeoJSON"),
    ("MultiDatastreams", "unitOfMeasurements", {}, "must be a JSON array"),
    ("MultiDatastreams", "multiObservationDataTypes", "x", "must be a JSON array"),
    ("Sensors", "metadata", None, "may not be null"),
    ("Sensors", "encodingType", {}, "must be a string"),
    ("ObservedProperties", "definition", 5, "must be a string"),
    ("Observations", "phenomenonTime", "yesterday", "ISO 8601"),
    ("Observations", "phenomenonTime", 1732269600, "ISO 8601"),
    ("Observations", "phenomenonTime", "2026-11-22T25:00:00Z", "ISO 8601"),
    ("Observations", "phenomenonTime", "2026-11-22T10:00:00Z/", "ISO 8601"),
    ("Observations", "phenomenonTime", None, "may not be null"),
    ("Observations", "resultTime", "2026-11-22T10:00:00Z/2026-11-22T11:00:00Z", "ISO 8601"),
    ("Observations", "validTime", "2026-11-22T10:00:00Z", "interval"),
    ("Observations", "validTime", "2026-11-22T10:00:00Z/x/y", "interval"),
    ("Observations", "parameters", [], "must be a JSON object"),
    ("FeaturesOfInterest", "feature", "x", "GeoJSON"),
]


@pytest.mark.parametrize(
    ("entity_set", "key", "value", "needle"), WRONG_TYPES, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in WRONG_TYPES]
)
def test_wrongly_typed_member_is_400_and_named(
    seeded: TestClient, entity_set: str, key: str, value: object, needle: str
) -> None:
    body = {**valid_body(entity_set), key: value}
    rejected(seeded, "POST", f"/{entity_set}", 400, key, needle, field=key, json=body)


PATCH_WRONG_TYPES = [WRONG_TYPES[i] for i in (0, 1, 3, 5, 15, 18, 26, 31, 34, 35)]


@pytest.mark.parametrize(
    ("entity_set", "key", "value", "needle"),
    PATCH_WRONG_TYPES,
    ids=[f"{s}.{k}={v!r}" for s, k, v, _ in PATCH_WRONG_TYPES],
)
def test_wrongly_typed_member_in_patch_is_400_and_nothing_changes(
    seeded: TestClient, entity_set: str, key: str, value: object, needle: str
) -> None:
    before = seeded.get(f"{V}/{entity_set}(1)").json()
    rejected(seeded, "PATCH", f"/{entity_set}(1)", 400, key, needle, field=key, json={key: value})
    assert seeded.get(f"{V}/{entity_set}(1)").json() == before


def test_wrongly_typed_member_deep_in_a_deep_insert_creates_nothing(seeded: TestClient) -> None:
    thing = f.full_thing()
    thing["Datastreams"][0]["ObservedProperty"]["definition"] = 5
    rejected(
        seeded,
        "POST",
        "/Things",
        400,
        "must be a string",
        field="Datastreams[0].ObservedProperty.definition",
        json=thing,
    )


# -- missing members -------------------------------------------------------------------------

REQUIRED = {
    "Things": ["name", "description"],
    "Locations": ["name", "description", "encodingType", "location"],
    "HistoricalLocations": ["time", "Thing"],
    "Datastreams": [
        "name",
        "description",
        "unitOfMeasurement",
        "observationType",
        "Thing",
        "Sensor",
        "ObservedProperty",
    ],
    "MultiDatastreams": [
        "name",
        "description",
        "unitOfMeasurements",
        "observationType",
        "multiObservationDataTypes",
        "Thing",
        "Sensor",
        "ObservedProperties",
    ],
    "Sensors": ["name", "description", "encodingType", "metadata"],
    "ObservedProperties": ["name", "definition", "description"],
    "Observations": ["result", "Datastream"],
    "FeaturesOfInterest": ["name", "description", "encodingType", "feature"],
}
MISSING = [(s, k) for s, keys in REQUIRED.items() for k in keys]


@pytest.mark.parametrize(("entity_set", "key"), MISSING, ids=[f"{s}-{k}" for s, k in MISSING])
def test_missing_mandatory_member_is_400_and_named(seeded: TestClient, entity_set: str, key: str) -> None:
    body = {k: v for k, v in valid_body(entity_set).items() if k != key}
    rejected(seeded, "POST", f"/{entity_set}", 400, key, "missing", field=key, json=body)


@pytest.mark.parametrize("entity_set", ENTITY_SETS)
def test_empty_object_is_400(seeded: TestClient, entity_set: str) -> None:
    rejected(seeded, "POST", f"/{entity_set}", 400, "missing", json={})


@pytest.mark.parametrize("entity_set", ["Things", "Sensors", "Datastreams"])
def test_put_without_mandatory_member_is_400(seeded: TestClient, entity_set: str) -> None:
    body = {k: v for k, v in valid_body(entity_set).items() if k != "name"}
    rejected(seeded, "PUT", f"/{entity_set}(1)", 400, "name", "missing", field="name", json=body)


def test_observation_without_feature_and_without_location_to_derive_one_is_400(client: TestClient) -> None:
    thing = f.full_thing()
    del thing["Locations"]
    assert client.post(f"{V}/Things", json=thing).status_code == 201
    body = {k: v for k, v in valid_body("Observations").items() if k != "FeatureOfInterest"}
    rejected(client, "POST", "/Observations", 400, "FeatureOfInterest", field="FeatureOfInterest", json=body)


# -- links to entities that do not exist --------------------------------------------------------

DANGLING = [
    ("Datastreams", "Thing", REF999, "Thing", "no Thing with @iot.id 999"),
    ("Datastreams", "Sensor", REF999, "Sensor", "no Sensor with @iot.id 999"),
    ("Datastreams", "ObservedProperty", REF999, "ObservedProperty", "no ObservedProperty with @iot.id 999"),
    ("Observations", "Datastream", REF999, "Datastream", "no Datastream with @iot.id 999"),
    ("Observations", "FeatureOfInterest", REF999, "FeatureOfInterest", "no FeatureOfInterest with @iot.id 999"),
    ("Things", "Locations", [REF999], "Locations[0]", "no Location with @iot.id 999"),
    ("Things", "Datastreams", [REF999], "Datastreams[0]", "no Datastream with @iot.id 999"),
    ("Locations", "Things", [REF999], "Things[0]", "no Thing with @iot.id 999"),
    ("HistoricalLocations", "Thing", REF999, "Thing", "no Thing with @iot.id 999"),
    ("MultiDatastreams", "ObservedProperties", [REF999], "ObservedProperties[0]", "no ObservedProperty"),
    ("MultiDatastreams", "Sensor", REF999, "Sensor", "no Sensor with @iot.id 999"),
]


@pytest.mark.parametrize(
    ("entity_set", "key", "value", "field", "needle"), DANGLING, ids=[f"{d[0]}.{d[1]}" for d in DANGLING]
)
def test_link_to_missing_id_is_400_and_named(
    seeded: TestClient, entity_set: str, key: str, value: object, field: str, needle: str
) -> None:
    body = {**valid_body(entity_set), key: value}
    rejected(seeded, "POST", f"/{entity_set}", 400, needle, field=field, json=body)


def test_observation_with_missing_multidatastream_is_400(seeded: TestClient) -> None:
    body = {"result": [1.0], "MultiDatastream": dict(REF999)}
    rejected(
        seeded, "POST", "/Observations", 400, "no MultiDatastream with @iot.id 999", field="MultiDatastream", json=body
    )


def test_dangling_link_deep_in_a_deep_insert_creates_nothing(seeded: TestClient) -> None:
    """The Thing, its Location and its new ObservedProperty come before the bad Sensor: none may stay."""
    thing = f.full_thing()
    thing["Datastreams"][0]["Sensor"] = dict(REF999)
    rejected(seeded, "POST", "/Things", 400, "no Sensor with @iot.id 999", field="Datastreams[0].Sensor", json=thing)


@pytest.mark.parametrize(
    "bad_id",
    ["abc", "1x", -1, 1.5, True, None, 2**63, 2**70, [], {}],
    ids=["abc", "1x", "neg", "float", "bool", "null", "2^63", "2^70", "list", "object"],
)
def test_malformed_id_in_a_link_is_400(seeded: TestClient, bad_id: object) -> None:
    body = {**valid_body("Things"), "Locations": [{"@iot.id": bad_id}]}
    if bad_id is None:
        # {"@iot.id": null} is not a link; it is a new Location without its mandatory members.
        rejected(seeded, "POST", "/Things", 400, "missing", json=body)
    else:
        rejected(seeded, "POST", "/Things", 400, "id", field="Locations[0].@iot.id", json=body)


def test_patch_to_missing_link_is_400_and_keeps_the_old_link(seeded: TestClient) -> None:
    rejected(
        seeded, "PATCH", "/Datastreams(1)", 400, "no Thing with @iot.id 999", field="Thing", json={"Thing": REF999}
    )
    assert seeded.get(f"{V}/Datastreams(1)/Thing").json()["@iot.id"] == 1


def test_post_under_missing_parent_is_404(seeded: TestClient) -> None:
    body = f.datastream(Sensor=dict(REF1), ObservedProperty=dict(REF1))
    rejected(seeded, "POST", "/Things(999)/Datastreams", 404, "no Thing with @iot.id 999", json=body)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/Things(1)/Locations/$ref", REF999, 400, "no Location with @iot.id 999"),
        ("POST", "/Things(1)/Locations/$ref", {"@iot.id": "x"}, 400, "integer id"),
        ("POST", "/Things(1)/Locations/$ref", {"@iot.selfLink": 5}, 400, "@iot.selfLink"),
        ("POST", "/Things(1)/Locations/$ref", {"@iot.selfLink": f"http://testserver{V}/Things(1)"}, 400, "Location"),
        ("POST", "/Things(1)/Locations/$ref", {"@iot.selfLink": "Nope(1)"}, 404, "'Nope'"),
        ("POST", "/Things(1)/Locations/$ref", {}, 400, "@iot.id"),
        ("POST", "/Things(1)/Locations/$ref", [REF1], 400, "reference is an object"),
        ("POST", "/Things(999)/Locations/$ref", REF1, 404, "no Thing with @iot.id 999"),
        ("POST", "/Things/$ref", REF1, 405, "POST is not supported"),
        ("PUT", "/Datastreams(1)/Sensor/$ref", REF999, 400, "no Sensor with @iot.id 999"),
        ("PUT", "/Things(1)/Locations/$ref", REF1, 405, "PUT"),
        ("POST", "/Datastreams(1)/Sensor/$ref", REF1, 405, "POST"),
        ("DELETE", "/Things(1)/Locations(999)/$ref", None, 404, "Locations(999)"),
        ("DELETE", "/Things(1)/Locations/$ref", None, 400, "name the link"),
        ("DELETE", "/Datastreams(1)/Thing/$ref", None, 409, "needs its Thing"),
        ("DELETE", "/Observations(1)/FeatureOfInterest/$ref", None, 409, "needs its FeatureOfInterest"),
    ],
)
def test_bad_reference_requests(
    seeded: TestClient, method: str, path: str, body: object, status: int, needle: str
) -> None:
    request: dict[str, Any] = {} if body is None else {"json": body}
    rejected(seeded, method, path, status, needle, **request)
    assert seeded.get(f"{V}/Things(1)/Locations/$ref").json()["value"][0]["@iot.selfLink"].endswith("Locations(1)")


# -- bad ids and bad paths ------------------------------------------------------------------------

BAD_IDS = ["Things(abc)", "Things(-1)", "Things(1.5)", "Things(99999999999999999999999)", "Things()", "Things(1)(2)"]


BAD_ID_REQUESTS = [("GET", p) for p in BAD_IDS] + [
    (m, p) for m in ("PATCH", "PUT", "DELETE") for p in ("Things(abc)", "Things(99999999999999999999999)")
]


@pytest.mark.parametrize(("method", "path"), BAD_ID_REQUESTS)
def test_malformed_id_in_path_is_400(seeded: TestClient, method: str, path: str) -> None:
    request: dict[str, Any] = {} if method in ("GET", "DELETE") else {"json": {"name": "x"}}
    rejected(seeded, method, "/" + path, 400, "not a valid id", field="Things", **request)


@pytest.mark.parametrize(
    "path", ["Things(1)/Datastreams(x)", "Things(1)/Datastreams(-3)/Observations", "Datastreams(1)/Observations(1e3)"]
)
def test_malformed_id_deeper_in_path_is_400(seeded: TestClient, path: str) -> None:
    body = assert_error(seeded.get(f"{V}/{path}"), 400, "not a valid id")
    assert body["field"] in ("Datastreams", "Observations")


@pytest.mark.parametrize("path", ["Things(999)", "Things(0)", "Things(1)/Datastreams(999)", "Things(999)/Datastreams"])
def test_unknown_id_is_404(seeded: TestClient, path: str) -> None:
    assert_error(seeded.get(f"{V}/{path}"), 404)


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_write_to_unknown_id_is_404_and_changes_nothing(seeded: TestClient, method: str) -> None:
    request: dict[str, Any] = {} if method == "DELETE" else {"json": valid_body("Things")}
    rejected(seeded, method, "/Things(999)", 404, "999", **request)


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("Nope", 404, "'Nope'"),
        ("things", 404, "'things'"),
        ("Things(1)/Nope", 404, "'Nope'"),
        ("Datastreams(1)/Things", 404, "'Things'"),
        ("Things/Datastreams", 400, "cannot follow a collection"),
        ("Things/name", 400, "cannot follow a collection"),
        ("Things(1)/name/$value/x", 400, "nothing may follow $value"),
        ("Things(1)/$ref/x", 400, "nothing may follow $ref"),
        ("Things(1)/$value", 400, "$value must follow a property"),
        ("Things(1)/name/$ref", 400, "$ref must follow an entity"),
        ("$ref", 400, "$ref must follow an entity"),
        ("Things(1)/properties/buurt", 400, "properties is a property"),
        ("Things(1)/name/description", 400, "name is a property"),
        ("Datastreams(1)/Thing(1)", 400, "single entity"),
        ("Things(1)//Datastreams", 400, "not a valid path segment"),
        ("Things(1)/Data-streams", 400, "not a valid path segment"),
        ("Things[1]", 400, "not a valid path segment"),
    ],
)
def test_bad_path(seeded: TestClient, path: str, status: int, needle: str) -> None:
    assert_error(seeded.get(f"{V}/{path}"), status, needle)


@pytest.mark.parametrize("path", ["Nope", "Things/Datastreams"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_writes_to_bad_paths_are_4xx_and_change_nothing(seeded: TestClient, method: str, path: str) -> None:
    before = counts(seeded)
    request: dict[str, Any] = {} if method == "DELETE" else {"json": valid_body("Things")}
    r = seeded.request(method, f"{V}/{path}", **request)
    assert_error(r, r.status_code)
    assert r.status_code in (400, 404, 405)
    assert counts(seeded) == before


# -- methods and media types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/Things", {"GET", "POST"}),
        ("PATCH", "/Things", {"GET", "POST"}),
        ("PUT", "/Things", {"GET", "POST"}),
        ("DELETE", "/Things(1)/Datastreams", {"GET", "POST"}),
        ("POST", "/Things(1)", {"GET", "PATCH", "DELETE"}),
        ("POST", "/Datastreams(1)/Thing", {"GET", "PATCH", "DELETE"}),
        ("POST", "/Things(1)/name", {"GET"}),
        ("PATCH", "/Things(1)/name", {"GET"}),
        ("DELETE", "/Things(1)/name", {"GET"}),
        ("PATCH", "/Things(1)/Locations/$ref", {"GET", "POST"}),
        ("PATCH", "", {"GET"}),
        ("PUT", "", {"GET"}),
        ("POST", "", {"GET"}),
        ("DELETE", "", {"GET"}),
    ],
)
def test_unsupported_method_is_405_with_allow(seeded: TestClient, method: str, path: str, allowed: set[str]) -> None:
    request = {"json": valid_body("Things")} if method in ("POST", "PATCH", "PUT") else {}
    before = counts(seeded)
    r = seeded.request(method, V + path, **request)
    assert_error(r, 405)
    allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert allow, "405 without an Allow header"
    assert method not in allow
    assert allowed <= allow
    assert counts(seeded) == before


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/Things", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/Things(1)", {"GET", "HEAD", "PATCH", "PUT", "DELETE", "OPTIONS"}),
        ("/Things(1)/name", {"GET", "HEAD", "OPTIONS"}),
        ("/Things(1)/Locations/$ref", {"GET", "HEAD", "POST", "DELETE", "OPTIONS"}),
        ("/Things(1)/Locations(1)/$ref", {"GET", "HEAD", "DELETE", "OPTIONS"}),
        ("/Datastreams(1)/Thing/$ref", {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
        ("/CreateObservations", {"POST", "OPTIONS"}),
        ("", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_lists_the_methods_a_path_answers(seeded: TestClient, path: str, allowed: set[str]) -> None:
    r = seeded.request("OPTIONS", V + path)
    assert r.status_code == 204, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed


MEDIA_TYPES = [
    ("POST", "/Things", "text/plain"),
    ("POST", "/Things", "application/xml"),
    ("POST", "/Things", "application/x-www-form-urlencoded"),
    ("POST", "/Things", "multipart/form-data; boundary=x"),
    ("PATCH", "/Things(1)", "text/plain"),
    ("PUT", "/Things(1)", "application/xml"),
    ("POST", "/CreateObservations", "text/plain"),
    ("POST", "/Things(1)/Locations/$ref", "text/plain"),
]


@pytest.mark.parametrize(("method", "path", "ctype"), MEDIA_TYPES)
def test_unsupported_media_type_is_415(seeded: TestClient, method: str, path: str, ctype: str) -> None:
    raw = json.dumps(valid_body("Things")).encode()
    media = ctype.split(";")[0]
    rejected(seeded, method, path, 415, repr(media), "application/json", content=raw, headers={"content-type": ctype})


@pytest.mark.parametrize(("method", "path"), [("POST", "/Things"), ("PUT", "/Things(1)")])
def test_json_patch_media_type_only_on_patch(seeded: TestClient, method: str, path: str) -> None:
    rejected(seeded, method, path, 415, "application/json-patch+json", content=b"[]", headers=JSON_PATCH)


def test_batch_with_unsupported_media_type_is_415(seeded: TestClient) -> None:
    body = json.dumps({"requests": [{"id": "1", "method": "POST", "url": "Things", "body": valid_body("Things")}]})
    rejected(seeded, "POST", "/$batch", 415, "text/plain", content=body, headers={"content-type": "text/plain"})


def test_json_with_charset_parameter_is_accepted(seeded: TestClient) -> None:
    r = seeded.post(
        f"{V}/Things",
        content=json.dumps(valid_body("Things")),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"op": "replace", "path": "/name", "value": "x"}, "array of operations"),
        ([1], "cannot be applied"),
        ([{"path": "/name"}], "cannot be applied"),
        ([{"op": "bogus", "path": "/name"}], "cannot be applied"),
        ([{"op": "replace", "path": "name", "value": "x"}], "cannot be applied"),
        ([{"op": "replace", "path": "/nope", "value": 1}], "cannot be applied"),
        ([{"op": "test", "path": "/name", "value": "not the name"}], "cannot be applied"),
        ([{"op": "move", "from": "/name", "path": "/name/x"}], "cannot be applied"),
        ([{"op": "replace", "path": "", "value": []}], "must leave an object"),
        ([{"op": "replace", "path": "/name", "value": 5}], "must be a string"),
        ([{"op": "add", "path": "/foo", "value": 5}], "'foo'"),
        ([{"op": "remove", "path": "/name"}], "missing"),
    ],
)
def test_bad_json_patch_is_400_and_changes_nothing(seeded: TestClient, patch: object, needle: str) -> None:
    before = seeded.get(f"{V}/Things(1)").json()
    rejected(seeded, "PATCH", "/Things(1)", 400, needle, content=json.dumps(patch), headers=JSON_PATCH)
    assert seeded.get(f"{V}/Things(1)").json() == before


# -- oversized bodies ---------------------------------------------------------------------------


def test_body_over_the_default_limit_is_413(seeded: TestClient) -> None:
    limit = Settings().max_body_bytes
    raw = b" " * (limit + 1)
    rejected(seeded, "POST", "/Things", 413, str(limit), content=raw)


@pytest.fixture
def small_limit(settings: Settings) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, max_body_bytes=1024))
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def _padded_thing(size: int) -> bytes:
    body = valid_body("Things")
    body["description"] = "x" * size
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/Things", {}),
        ("PATCH", "/Things(1)", {}),
        ("PATCH", "/Things(1)", JSON_PATCH),
        ("POST", "/CreateObservations", {}),
        ("POST", "/$batch", {}),
        ("POST", "/$batch", MULTIPART),
    ],
)
def test_body_over_a_configured_limit_is_413(
    small_limit: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    assert small_limit.post(f"{V}/Things", content=_padded_thing(100)).status_code == 201
    rejected(small_limit, method, path, 413, "1024", content=_padded_thing(1100), headers=headers)


def test_chunked_body_over_the_limit_is_413(small_limit: TestClient) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    raw = _padded_thing(3000)
    chunks = (raw[i : i + 256] for i in range(0, len(raw), 256))
    rejected(small_limit, "POST", "/Things", 413, "1024", content=chunks)


def test_body_just_under_the_limit_is_accepted(small_limit: TestClient) -> None:
    raw = _padded_thing(1)
    raw = _padded_thing(1 + 1024 - len(raw))
    assert len(raw) == 1024
    assert small_limit.post(f"{V}/Things", content=raw).status_code == 201


# -- query options ------------------------------------------------------------------------------

BAD_QUERIES = [
    ("Things", "$top=-1", "$top", "non-negative integer"),
    ("Things", "$top=abc", "$top", "non-negative integer"),
    ("Things", "$top=1.5", "$top", "non-negative integer"),
    ("Things", "$top=", "$top", "non-negative integer"),
    ("Things", "$top=99999999999999999999", "$top", "too large"),
    ("Things", "$skip=x", "$skip", "non-negative integer"),
    ("Things", "$skip=-5", "$skip", "non-negative integer"),
    ("Things", "$count=maybe", "$count", "true or false"),
    ("Things", "$count=TRUE", "$count", "true or false"),
    ("Things", "$orderby=nope", "$orderby", "'nope'"),
    ("Things", "$orderby=name sideways", "$orderby", "'sideways'"),
    ("Things", "$orderby=properties", "$orderby", "cannot order by the object"),
    ("Things", "$orderby=", "$orderby", "empty"),
    ("Things", "$filter=name eq", "$filter", "end of input"),
    ("Things", "$filter=name eq 'x", "$filter", "unterminated string"),
    ("Things", "$filter=nope eq 1", "$filter", "'nope'"),
    ("Things", "$filter=name", "$filter", "not a condition"),
    ("Things", "$filter=name = 'x'", "$filter", "eq"),
    ("Things", "$filter=name add 1 gt 2", "$filter", "expected a number"),
    ("Things", "$filter=foo(name) eq 1", "$filter", "unknown function 'foo'"),
    ("Things", "$filter=substringof(name) eq 1", "$filter", "takes 2 arguments"),
    ("Things", "$filter=id eq 99999999999999999999", "$filter", "too large"),
    ("Things", "$filter=(name eq 'x'", "$filter", "never closed"),
    ("Things", "$filter=Datastreams/nope eq 1", "$filter", "'nope'"),
    ("Things", "$filter=" + "not " * 300 + "true", "$filter", "nested too deeply"),
    ("Things", "$filter=", "$filter", "empty"),
    ("Things", "$expand=Nope", "$expand", "'Nope'"),
    ("Things", "$expand=Datastreams/Nope", "$expand", "'Nope'"),
    ("Things", "$expand=Datastreams(", "$expand", "never closed"),
    ("Things", "$expand=Datastreams($top=x)", "$expand", "non-negative integer"),
    ("Things", "$expand=Datastreams($foo=1)", "$expand", "$foo"),
    ("Things", "$expand=Datastreams($filter=nope eq 1)", "$expand", "'nope'"),
    ("Things", "$select=nope", "$select", "'nope'"),
    ("Things", "$select=", "$select", "empty"),
    ("Things", "$select=name,,description", "$select", "position"),
    ("Things", "$foo=1", "$foo", "unknown query option '$foo'"),
    ("Things", "$fitler=name eq 'x'", "$fitler", "did you mean $filter"),
    ("Things", "$resultFormat=dataArray", "$resultFormat", "Observations only"),
    ("Observations", "$resultFormat=csv", "$resultFormat", "dataArray"),
    ("Observations", "$filter=phenomenonTime gt 2026-02-30", "$filter", "day is out of range"),
    ("Observations", "$filter=phenomenonTime add 1 gt now()", "$filter", "expected a number"),
    ("Observations", "$filter=result eq duration'P1Y'", "$filter", "invalid duration"),
    ("Observations", "$filter=geo.intersects(FeatureOfInterest/feature, geography'POINT(1') ", "$filter", "geometry"),
]


@pytest.mark.parametrize(
    ("entity_set", "query", "option", "needle"), BAD_QUERIES, ids=[f"{s}?{q[:40]}" for s, q, _, _ in BAD_QUERIES]
)
def test_bad_query_option_is_400_and_names_the_option(
    seeded: TestClient, entity_set: str, query: str, option: str, needle: str
) -> None:
    key, _, value = query.partition("=")
    r = seeded.get(f"{V}/{entity_set}", params={key: value})
    body = assert_error(r, 400, needle, option=option)
    assert body["message"].startswith(option), body
    assert body["code"] == "invalid-query"
    if "position" in body:
        assert isinstance(body["position"], int) and 0 <= body["position"] <= len(value)


def test_filter_on_a_single_entity_is_400(seeded: TestClient) -> None:
    assert_error(seeded.get(f"{V}/Things(1)", params={"$filter": "name eq 'x'"}), 400, "$filter")


def test_bad_query_option_on_a_write_changes_nothing(seeded: TestClient) -> None:
    """Options are not used on writes, but a malformed one must not hide a success either way: no 5xx."""
    r = seeded.post(f"{V}/Things", params={"$top": "abc"}, json=valid_body("Things"))
    assert r.status_code < 500


# -- $skiptoken ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("", "!!!"),
        ("", "not base64 at all"),
        ("", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
        ("", b64({})),
        ("", b64("x")),
        ("", b64(1)),
        ("", b64([[1]])),
        ("", b64([{"a": 1}])),
        ("", b64([])),
        ("", b64([1, 2, 3])),
        ("&$orderby=name", b64([1])),
        ("&$orderby=name", b64(["a", 1, 2])),
    ],
)
def test_bad_skiptoken_is_400(seeded: TestClient, query: str, token: str) -> None:
    r = seeded.get(f"{V}/Things?$skiptoken={token}{query}")
    assert_error(r, 400, "$skiptoken", option="$skiptoken")


def test_skiptoken_from_a_next_link_works(seeded: TestClient) -> None:
    """The control: a real token is accepted."""
    assert seeded.post(f"{V}/Things", json=valid_body("Things")).status_code == 201
    first = seeded.get(f"{V}/Things?$top=1&$orderby=name").json()
    r = seeded.get(first["@iot.nextLink"])
    assert r.status_code == 200, r.text
    assert len(r.json()["value"]) == 1


# -- $batch ---------------------------------------------------------------------------------------


def _req(**kw: Any) -> dict[str, Any]:
    return {"id": "1", "method": "GET", "url": "Things", **kw}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"requests": "x"}, "a JSON batch is an object"),
        ([_req()], "a JSON batch is an object"),
        ({}, "a JSON batch is an object"),
        ({"requests": [5]}, "requests[0] must be an object"),
        ({"requests": [_req(id=5)]}, "requests[0].id"),
        ({"requests": [_req(id="")]}, "requests[0].id"),
        ({"requests": [_req(), _req()]}, "used twice"),
        ({"requests": [_req(method="FOO")]}, "requests[0].method"),
        ({"requests": [_req(method=None)]}, "requests[0].method"),
        ({"requests": [_req(url="")]}, "requests[0].url"),
        ({"requests": [_req(url=5)]}, "requests[0].url"),
        ({"requests": [_req(headers={"x": 1})]}, "requests[0].headers"),
        ({"requests": [_req(headers="x")]}, "requests[0].headers"),
        ({"requests": [_req(atomicityGroup=5)]}, "requests[0].atomicityGroup"),
        ({"requests": [_req(dependsOn=["9"])]}, "requests[0].dependsOn"),
        ({"requests": [_req(dependsOn="1")]}, "requests[0].dependsOn"),
        ({"requests": [_req(atomicityGroup="g")]}, "only contain changes"),
        ({"requests": [_req(id=str(i)) for i in range(1001)]}, "at most 1000"),
    ],
)
def test_bad_json_batch_is_400(seeded: TestClient, doc: object, needle: str) -> None:
    rejected(seeded, "POST", "/$batch", 400, needle, json=doc)


def test_bad_json_batch_runs_none_of_its_requests(seeded: TestClient) -> None:
    doc = {"requests": [_req(method="POST", body=valid_body("Things")), _req(id="2", method="FOO")]}
    rejected(seeded, "POST", "/$batch", 400, "requests[1].method", json=doc)


@pytest.mark.parametrize(
    ("inner", "status", "needle"),
    [
        (_req(url="Nope"), 404, "'Nope'"),
        (_req(url="Things(abc)"), 400, "not a valid id"),
        (_req(url="Things?$top=abc"), 400, "$top"),
        (_req(method="POST", body={"name": 5}), 400, "name must be a string"),
        (_req(method="POST", body=[1]), 400, "JSON object"),
        (_req(method="POST", body=valid_body("Things"), headers={"content-type": "text/plain"}), 415, "text/plain"),
        (_req(method="DELETE"), 405, "DELETE"),
        (_req(url="$batch"), 400, "$batch"),
        (_req(url="/v1.1/$batch"), 400, "another $batch"),
        (_req(url="$7/Datastreams"), 400, "$7"),
    ],
)
def test_failing_inner_request_reports_its_json_error(
    seeded: TestClient, inner: dict[str, Any], status: int, needle: str
) -> None:
    before = counts(seeded)
    r = seeded.post(f"{V}/$batch", json={"requests": [inner]})
    assert r.status_code == 200, r.text
    [response] = r.json()["responses"]
    assert response["status"] == status, response
    body = response["body"]
    assert isinstance(body, dict) and body.get("code") and needle in body.get("message", ""), body
    assert counts(seeded) == before


def test_failed_atomicity_group_creates_nothing(seeded: TestClient) -> None:
    doc = {
        "requests": [
            _req(id="1", method="POST", body=valid_body("Things"), atomicityGroup="g"),
            _req(id="2", method="POST", url="Sensors", body=valid_body("Sensors"), atomicityGroup="g"),
            _req(id="3", method="POST", url="$1/Datastreams", body={"name": 5}, atomicityGroup="g"),
        ]
    }
    before = counts(seeded)
    r = seeded.post(f"{V}/$batch", json=doc)
    assert r.status_code == 200, r.text
    assert {resp["status"] for resp in r.json()["responses"]} == {400}
    assert counts(seeded) == before


def test_request_depending_on_a_failed_one_is_424(seeded: TestClient) -> None:
    doc = {
        "requests": [
            _req(id="1", method="POST", body={"name": 5}),
            _req(id="2", method="POST", url="Sensors", body=valid_body("Sensors"), dependsOn=["1"]),
        ]
    }
    before = counts(seeded)
    r = seeded.post(f"{V}/$batch", json=doc)
    assert r.status_code == 200, r.text
    statuses = [resp["status"] for resp in r.json()["responses"]]
    assert statuses == [400, 424]
    assert "message" in r.json()["responses"][1]["body"]
    assert counts(seeded) == before


def _multipart(*parts: bytes, boundary: bytes = b"b") -> bytes:
    out = b""
    for part in parts:
        out += b"--" + boundary + b"\r\n" + part + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize(
    ("raw", "ctype", "needle"),
    [
        (b"--b\r\n", "multipart/mixed", "boundary"),
        (b"--b\r\n", 'multipart/mixed; boundary=""', "boundary"),
        (b"no boundaries here", "multipart/mixed; boundary=b", "no parts"),
        (_multipart(b"Content-Type: text/plain\r\n\r\nhello"), "multipart/mixed; boundary=b", "application/http"),
        (_multipart(b"Content-Type: application/http\r\n\r\n"), "multipart/mixed; boundary=b", "no request line"),
        (_multipart(b"Content-Type: application/http\r\n\r\nGET\r\n"), "multipart/mixed; boundary=b", "request line"),
        (
            _multipart(b"Content-Type: multipart/mixed\r\n\r\n--c--"),
            "multipart/mixed; boundary=b",
            "boundary",
        ),
    ],
)
def test_bad_multipart_batch_is_400(seeded: TestClient, raw: bytes, ctype: str, needle: str) -> None:
    rejected(seeded, "POST", "/$batch", 400, needle, content=raw, headers={"content-type": ctype})


def test_multipart_inner_malformed_json_is_reported_in_its_part(seeded: TestClient) -> None:
    part = (
        b"Content-Type: application/http\r\n\r\nPOST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{bad\r\n"
    )
    before = counts(seeded)
    r = seeded.post(f"{V}/$batch", content=_multipart(part), headers=MULTIPART)
    assert r.status_code == 200, r.text
    assert "HTTP/1.1 400" in r.text and "not valid JSON" in r.text
    assert counts(seeded) == before


# -- CreateObservations -------------------------------------------------------------------------


def _group(**kw: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "Datastream": dict(REF1),
        "components": ["phenomenonTime", "result"],
        "dataArray": [["2026-11-22T10:00:00Z", 0.42]],
    }
    group.update(kw)
    return {k: v for k, v in group.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({}, "body", "JSON array"),
        (_group(), "body", "JSON array"),
        ([5], "[0]", "must be an object"),
        ([_group(), "x"], "[1]", "must be an object"),
        ([_group(Datastream=None)], "[0].Datastream", "@iot.id"),
        ([_group(Datastream=5)], "[0].Datastream", "@iot.id"),
        ([_group(Datastream={})], "[0].Datastream", "@iot.id"),
        ([_group(Datastream={"@iot.id": "abc"})], "[0].Datastream.@iot.id", "integer id"),
        ([_group(Datastream={"@iot.id": -1})], "[0].Datastream.@iot.id", "out of range"),
        ([_group(Datastream={"@iot.id": 2**63})], "[0].Datastream.@iot.id", "out of range"),
        ([_group(components=None)], "[0].components", "non-empty array"),
        ([_group(components=[])], "[0].components", "non-empty array"),
        ([_group(components="result")], "[0].components", "non-empty array"),
        ([_group(components=["result", 5])], "[0].components", "non-empty array"),
        ([_group(components=["result", "colour"])], "[0].components", "'colour'"),
        ([_group(components=["phenomenonTime"])], "[0].components", "must include result"),
        ([_group(components=["result", "result"])], "[0].components", "twice"),
        ([_group(dataArray=None)], "[0].dataArray", "array of rows"),
        ([_group(dataArray={"a": 1})], "[0].dataArray", "array of rows"),
        ([_group(), _group(dataArray="x")], "[1].dataArray", "array of rows"),
    ],
)
def test_bad_create_observations_body_is_400_and_creates_nothing(
    seeded: TestClient, body: object, field: str, needle: str
) -> None:
    """A malformed group refuses the whole request, even the valid groups before it."""
    rejected(seeded, "POST", "/CreateObservations", 400, needle, field=field, json=body)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (["yesterday", 1], "phenomenonTime"),
        ([5, 1], "phenomenonTime"),
        (["2026-11-22T10:00:00Z"], "one per component"),
        (["2026-11-22T10:00:00Z", 1, 2], "one per component"),
        ("not a row", "one per component"),
        (None, "one per component"),
    ],
)
def test_bad_create_observations_row_is_reported_and_not_created(seeded: TestClient, row: object, needle: str) -> None:
    before = counts(seeded)
    r = seeded.post(f"{V}/CreateObservations", json=[_group(dataArray=[row])])
    assert r.status_code == 201, r.text
    [entry] = r.json()
    assert isinstance(entry, str) and entry.startswith("error:") and needle in entry, entry
    assert counts(seeded) == before


@pytest.mark.parametrize(
    ("components", "row", "needle"),
    [
        (["result", "FeatureOfInterest/id"], [1, 999], "no FeatureOfInterest with @iot.id 999"),
        (["result", "FeatureOfInterest/id"], [1, "x"], "FeatureOfInterest/id"),
        (["result", "FeatureOfInterest/id"], [1, -1], "FeatureOfInterest/id"),
        (["result", "FeatureOfInterest/id"], [1, 1.5], "FeatureOfInterest/id"),
        (["result", "resultTime"], [1, "2026-11-22T10:00:00Z/2026-11-22T11:00:00Z"], "resultTime"),
        (["result", "validTime"], [1, "2026-11-22T10:00:00Z"], "validTime"),
        (["result", "parameters"], [1, [1, 2]], "parameters"),
    ],
)
def test_bad_create_observations_cells_are_reported_per_row(
    seeded: TestClient, components: list[str], row: list[Any], needle: str
) -> None:
    before = counts(seeded)
    r = seeded.post(f"{V}/CreateObservations", json=[_group(components=components, dataArray=[row])])
    assert r.status_code == 201, r.text
    [entry] = r.json()
    assert isinstance(entry, str) and entry.startswith("error:") and needle in entry, entry
    assert counts(seeded) == before


@pytest.mark.parametrize("parent", ["Datastream", "MultiDatastream"])
def test_create_observations_for_a_missing_parent_creates_nothing(seeded: TestClient, parent: str) -> None:
    group = _group(Datastream=None, components=["result"], dataArray=[[1], [2]])
    group[parent] = dict(REF999)
    before = counts(seeded)
    r = seeded.post(f"{V}/CreateObservations", json=[group])
    assert r.status_code == 201, r.text
    assert r.json() == [f"error: there is no {parent} with @iot.id 999"] * 2
    assert counts(seeded) == before


# -- formerly known bugs, and the few left ---------------------------------------------------------
# Each test states the correct behaviour and fails today; strict, so a fix turns it into a failure
# that says "remove the xfail marker".

OUT_OF_RANGE_TIMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]


@pytest.mark.parametrize("time", OUT_OF_RANGE_TIMES)
@pytest.mark.parametrize(
    ("entity_set", "key"),
    [("Observations", "phenomenonTime"), ("Observations", "resultTime"), ("HistoricalLocations", "time")],
)
def test_out_of_range_time_is_400(seeded: TestClient, entity_set: str, key: str, time: str) -> None:
    body = {**valid_body(entity_set), key: time}
    rejected(seeded, "POST", f"/{entity_set}", 400, key, field=key, json=body)
    assert seeded.get(f"{V}/{entity_set}").status_code == 200


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00Z", "0643-02-04T13:39:24.500Z", "9999-12-31T23:59:59.999999Z"])
def test_early_and_late_years_read_back_as_written(seeded: TestClient, time: str) -> None:
    """Years below 1000 are written with four digits (strftime's %Y leaves them unpadded)."""
    r = seeded.post(f"{V}/Observations", json={**valid_body("Observations"), "phenomenonTime": time})
    assert r.status_code == 201, r.text
    assert seeded.get(r.headers["location"]).json()["phenomenonTime"] == time


@pytest.mark.parametrize("time", OUT_OF_RANGE_TIMES)
def test_out_of_range_time_in_create_observations_is_a_row_error(seeded: TestClient, time: str) -> None:
    r = seeded.post(f"{V}/CreateObservations", json=[_group(dataArray=[[time, 1]])])
    assert r.status_code == 201
    assert r.json()[0].startswith("error:")
    assert seeded.get(f"{V}/Observations").status_code == 200


def _deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("method", "path", "make"),
    [
        ("POST", "/Things", lambda deep: {**valid_body("Things"), "properties": deep}),
        ("POST", "/Observations", lambda deep: {**valid_body("Observations"), "result": deep}),
        ("PATCH", "/Things(1)", lambda deep: {"properties": deep}),
        ("POST", "/CreateObservations", lambda deep: [_group(dataArray=[["2026-11-22T10:00:00Z", deep]])]),
    ],
    ids=["Things.properties", "Observations.result", "PATCH-properties", "CreateObservations"],
)
def test_deeply_nested_json_value_is_not_500(seeded: TestClient, method: str, path: str, make: Any) -> None:
    r = seeded.request(method, V + path, content=json.dumps(make(_deep(300))))
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_error(r, r.status_code, "deep")


def test_geometry_collection_with_unknown_member_type_is_400(seeded: TestClient) -> None:
    location = {"type": "GeometryCollection", "geometries": [{"type": "Circle", "coordinates": [1, 2]}]}
    body = {**valid_body("Locations"), "location": location}
    rejected(seeded, "POST", "/Locations", 400, "location", field="location", json=body)


@pytest.mark.parametrize(
    ("entity_set", "key", "kind"),
    [("Locations", "location", []), ("Locations", "location", {}), ("FeaturesOfInterest", "feature", [])],
)
def test_geometry_type_that_is_not_a_string_is_400(seeded: TestClient, entity_set: str, key: str, kind: object) -> None:
    body = {**valid_body(entity_set), key: {"type": kind, "coordinates": [6.89, 52.22]}}
    rejected(seeded, "POST", f"/{entity_set}", 400, key, field=key, json=body)


@pytest.mark.parametrize("coordinates", [["6.89", "52.22"], [True, False]], ids=["strings", "booleans"])
def test_non_numeric_coordinates_are_400(seeded: TestClient, coordinates: list[Any]) -> None:
    body = {**valid_body("Locations"), "location": {"type": "Point", "coordinates": coordinates}}
    rejected(seeded, "POST", "/Locations", 400, "location", field="location", json=body)


@pytest.mark.parametrize(
    ("expr", "found"),
    [
        ("mindatetime() lt now()", 1),
        ("maxdatetime() gt now()", 1),
        ("mindatetime() gt now()", 0),
        ("maxdatetime() lt 9999-12-31T23:59:59Z", 0),
        ("mindatetime() eq 0001-01-01T00:00:00Z and maxdatetime() eq 9999-12-31T23:59:59.999999Z", 1),
    ],
)
def test_zero_argument_mindatetime_is_the_earliest_date_time(seeded: TestClient, expr: str, found: int) -> None:
    """mindatetime() and maxdatetime() take no arguments (OData): the earliest and latest date-time."""
    r = seeded.get(f"{V}/Things", params={"$filter": expr})
    assert r.status_code == 200, r.text
    assert len(r.json()["value"]) == found


@pytest.mark.parametrize("expr", ["mindatetime(phenomenonTime) lt now()", "maxdatetime(1) gt now()"])
def test_mindatetime_with_an_argument_is_400(seeded: TestClient, expr: str) -> None:
    assert_error(seeded.get(f"{V}/Things", params={"$filter": expr}), 400, option="$filter")


@pytest.mark.parametrize(("query", "keys"), [("", [True]), ("", [False]), ("&$orderby=name", ["a", True])])
def test_skiptoken_with_boolean_is_400(seeded: TestClient, query: str, keys: list[Any]) -> None:
    r = seeded.get(f"{V}/Things?$skiptoken={b64(keys)}{query}")
    assert_error(r, 400, option="$skiptoken")


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1], ids=["2^63", "-2^63-1"])
def test_skiptoken_with_huge_integer_is_400(seeded: TestClient, key: int) -> None:
    token = base64.urlsafe_b64encode(json.dumps([key]).encode()).decode().rstrip("=")
    assert_error(seeded.get(f"{V}/Things?$skiptoken={token}"), 400, option="$skiptoken")


@pytest.mark.parametrize("keys", [["x"], [1.5], [None]], ids=["string-id", "float-id", "null-id"])
def test_skiptoken_with_wrongly_typed_key_is_400(seeded: TestClient, keys: list[Any]) -> None:
    assert_error(seeded.get(f"{V}/Things?$skiptoken={b64(keys)}"), 400, option="$skiptoken")


@pytest.mark.parametrize("headers", [{"x-note": "€"}, {"x-nöte€": "x"}], ids=["value", "name"])
def test_batch_header_outside_latin1_is_not_500(seeded: TestClient, headers: dict[str, str]) -> None:
    r = seeded.post(f"{V}/$batch", json={"requests": [_req(headers=headers)]})
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("method", ["PATCH", "PUT", "POST", "DELETE"])
def test_method_on_service_root_with_slash_is_405(seeded: TestClient, method: str) -> None:
    r = seeded.request(method, f"{V}/", json={})
    assert_error(r, 405)
    assert "GET" in r.headers.get("allow", "")


@pytest.mark.parametrize("path", ["/CreateObservations", "/$batch"])
def test_get_on_post_only_endpoint_is_405(seeded: TestClient, path: str) -> None:
    r = seeded.get(V + path)
    assert_error(r, 405)
    assert {m.strip() for m in r.headers.get("allow", "").split(",")} == {"POST", "OPTIONS"}


def test_allow_header_lists_only_methods_that_work(seeded: TestClient) -> None:
    r = seeded.request("TRACE", f"{V}/Things")
    assert_error(r, 405)
    for method in (m.strip() for m in r.headers["allow"].split(",")):
        assert seeded.request(method, f"{V}/Things").status_code != 405, method


def test_ref_self_link_to_a_property_is_400(seeded: TestClient) -> None:
    link = f"http://testserver{V}/Locations(1)/name/$value"
    r = seeded.post(f"{V}/Things(1)/Locations/$ref", json={"@iot.selfLink": link})
    assert_error(r, 400, "@iot.selfLink", field="@iot.selfLink")


def test_removing_the_datastream_of_an_observation_is_409(seeded: TestClient) -> None:
    r = seeded.delete(f"{V}/Observations(1)/Datastream/$ref")
    assert_error(r, 409, "Datastream")
    assert seeded.get(f"{V}/Observations(1)/Datastream").status_code == 200


@pytest.mark.parametrize("query", ["$filter=name eq 'x'", "$top=1", "$expand=Datastreams"])
def test_query_options_on_a_property_path_are_400(seeded: TestClient, query: str) -> None:
    assert_error(seeded.get(f"{V}/Things(1)/name?{query}"), 400, "do not apply")
