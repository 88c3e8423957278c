"""Conformance: SensorThings API 1.1 core (datamodel, resource-path, the basics of request-data).

Requirements of OGC 18-088, http://www.opengis.net/spec/iot_sensing/1.1/req/...; each test names the ones it checks.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import fixtures as f
from tests.conftest import BASE

REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"
ISO_INSTANT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"
INSTANT = re.compile(ISO_INSTANT + "$")
INTERVAL = re.compile(ISO_INSTANT + "/" + ISO_INSTANT + "$")

STR, OBJ, LIST, NULL = (str,), (dict,), (list,), (type(None),)
ANY = (str, int, float, bool, dict, list, type(None))

# Every property of every entity type (18-088 clause 8.2, and 14.2 for MultiDatastream) with its JSON types.
PROPERTIES: dict[str, dict[str, tuple[type, ...]]] = {
    "Things": {"name": STR, "description": STR, "properties": OBJ + NULL},
    "Locations": {"name": STR, "description": STR, "encodingType": STR, "location": OBJ, "properties": OBJ + NULL},
    "HistoricalLocations": {"time": STR},
    "Datastreams": {
        "name": STR,
        "description": STR,
        "unitOfMeasurement": OBJ,
        "observationType": STR,
        "observedArea": OBJ + NULL,
        "phenomenonTime": STR + NULL,
        "resultTime": STR + NULL,
        "properties": OBJ + NULL,
    },
    "MultiDatastreams": {
        "name": STR,
        "description": STR,
        "unitOfMeasurements": LIST,
        "observationType": STR,
        "multiObservationDataTypes": LIST,
        "observedArea": OBJ + NULL,
        "phenomenonTime": STR + NULL,
        "resultTime": STR + NULL,
        "properties": OBJ + NULL,
    },
    "Sensors": {"name": STR, "description": STR, "encodingType": STR, "metadata": ANY, "properties": OBJ + NULL},
    "ObservedProperties": {"name": STR, "definition": STR, "description": STR, "properties": OBJ + NULL},
    "Observations": {
        "phenomenonTime": STR,
        "resultTime": STR + NULL,
        "result": ANY,
        "resultQuality": ANY,
        "validTime": STR + NULL,
        "parameters": OBJ + NULL,
    },
    "FeaturesOfInterest": {
        "name": STR,
        "description": STR,
        "encodingType": STR,
        "feature": OBJ,
        "properties": OBJ + NULL,
    },
}

# Every navigation property: name -> (target entity set, to-many?).
RELATIONS: dict[str, dict[str, tuple[str, bool]]] = {
    "Things": {
        "Locations": ("Locations", True),
        "HistoricalLocations": ("HistoricalLocations", True),
        "Datastreams": ("Datastreams", True),
        "MultiDatastreams": ("MultiDatastreams", True),
    },
    "Locations": {"Things": ("Things", True), "HistoricalLocations": ("HistoricalLocations", True)},
    "HistoricalLocations": {"Thing": ("Things", False), "Locations": ("Locations", True)},
    "Datastreams": {
        "Thing": ("Things", False),
        "Sensor": ("Sensors", False),
        "ObservedProperty": ("ObservedProperties", False),
        "Observations": ("Observations", True),
    },
    "MultiDatastreams": {
        "Thing": ("Things", False),
        "Sensor": ("Sensors", False),
        "ObservedProperties": ("ObservedProperties", True),
        "Observations": ("Observations", True),
    },
    "Sensors": {"Datastreams": ("Datastreams", True), "MultiDatastreams": ("MultiDatastreams", True)},
    "ObservedProperties": {"Datastreams": ("Datastreams", True), "MultiDatastreams": ("MultiDatastreams", True)},
    "Observations": {
        "Datastream": ("Datastreams", False),
        "MultiDatastream": ("MultiDatastreams", False),
        "FeatureOfInterest": ("FeaturesOfInterest", False),
    },
    "FeaturesOfInterest": {"Observations": ("Observations", True)},
}
ENTITY_SETS = sorted(PROPERTIES)


# -- helpers ---------------------------------------------------------------------------------------------------------


def get(client: TestClient, path: str, status: int = 200) -> Any:
    """GET ``path`` (relative to the service root, or absolute); check the status; the JSON body."""
    url = path if path.startswith("http") else f"{BASE}/{path}"
    r = client.get(url)
    assert r.status_code == status, f"GET {url}: {r.status_code} {r.text}"
    if status == 200:
        assert r.headers["content-type"].startswith("application/json")
        return r.json()
    return None


def post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"{BASE}/{path}", json=body)
    assert r.status_code == 201, f"POST {path}: {r.status_code} {r.text}"
    return r.json()  # type: ignore[no-any-return]


def ids(doc: dict[str, Any]) -> list[int]:
    return [e["@iot.id"] for e in doc["value"]]


def observation(result: Any, time: str, **links: Any) -> dict[str, Any]:
    return {"result": result, "phenomenonTime": time, "resultTime": time, **links}


def build_world(client: TestClient) -> None:
    """Thing 1 (Location 1, Datastreams 1 and 2, MultiDatastream 1), Thing 2 (Location 2, Datastream 3).

    Sensor 1 / ObservedProperty 1 serve Datastreams 1 and 2; Sensor 2 / ObservedProperty 2 Datastream 3.
    Observations 1-3 in Datastream 1, 4-5 in Datastream 2, 6 in Datastream 3, 7 in MultiDatastream 1.
    FeatureOfInterest 1 is given explicitly to Observation 1; the others are derived from the Locations.
    """
    post(client, "Things", f.full_thing("Well 1"))
    post(client, "Datastreams", f.datastream("level 2", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, **_op1()))
    post(
        client,
        "Things",
        f.thing(
            "Well 2",
            Locations=[f.location("Hengelo", {"type": "Point", "coordinates": [6.79, 52.26]})],
            Datastreams=[f.datastream("level 3", Sensor=f.sensor("Diver"), ObservedProperty=f.observed_property("t"))],
        ),
    )
    feature = {
        "name": "well 1 screen",
        "description": "filter screen",
        "encodingType": "application/geo+json",
        "feature": f.POINT,
    }
    post(
        client,
        "Observations",
        observation(0.41, "2026-01-01T10:00:00Z", Datastream={"@iot.id": 1}, FeatureOfInterest=feature),
    )
    post(client, "Observations", observation(0.42, "2026-01-01T11:00:00Z", Datastream={"@iot.id": 1}))
    post(client, "Observations", observation(0.43, "2026-01-01T12:00:00Z", Datastream={"@iot.id": 1}))
    post(client, "Datastreams(2)/Observations", observation(1.1, "2026-01-02T10:00:00Z"))
    post(client, "Datastreams(2)/Observations", observation(1.2, "2026-01-02T11:00:00Z"))
    post(client, "Datastreams(3)/Observations", observation(7.0, "2026-01-03T10:00:00Z"))
    post(
        client,
        "MultiDatastreams",
        {
            "name": "level and temperature",
            "description": "two values",
            "observationType": COMPLEX,
            "unitOfMeasurements": [f.UNIT_M, f.UNIT_M],
            "multiObservationDataTypes": [f.MEASUREMENT, f.MEASUREMENT],
            "Thing": {"@iot.id": 1},
            "Sensor": {"@iot.id": 1},
            "ObservedProperties": [{"@iot.id": 1}, {"@iot.id": 2}],
        },
    )
    post(client, "Observations", observation([0.5, 0.6], "2026-01-04T10:00:00Z", MultiDatastream={"@iot.id": 1}))


def _op1() -> dict[str, Any]:
    return {"ObservedProperty": {"@iot.id": 1}}


@pytest.fixture
def world(client: TestClient) -> TestClient:
    build_world(client)
    return client


def check_entity(set_name: str, e: dict[str, Any], expanded: tuple[str, ...] = ()) -> None:
    """req/datamodel/*/properties and common-control-information: every member present with its JSON type.

    ``expanded`` relations were $expanded: they are checked by the caller, and need no navigation link.
    """
    e = {k: v for k, v in e.items() if k not in expanded}
    assert isinstance(e["@iot.id"], int) and not isinstance(e["@iot.id"], bool)
    assert e["@iot.selfLink"] == f"{BASE}/{set_name}({e['@iot.id']})"
    for name, types in PROPERTIES[set_name].items():
        if name == "properties" and name not in e:
            continue  # the optional properties object is left out when it is null (as FROST-Server does)
        assert name in e, f"{set_name}: {name} missing in {e}"
        assert isinstance(e[name], types), f"{set_name}.{name}: {e[name]!r} is not one of {types}"
        assert name != "properties" or e[name] is not None, f"{set_name}: properties is null, not left out"
    for name in RELATIONS[set_name]:
        if name in expanded:
            continue
        assert e[f"{name}@iot.navigationLink"] == f"{e['@iot.selfLink']}/{name}"
    allowed = {
        "@iot.id",
        "@iot.selfLink",
        *PROPERTIES[set_name],
        *(f"{r}@iot.navigationLink" for r in RELATIONS[set_name]),
    }
    assert set(e) <= allowed, f"{set_name}: unexpected members {set(e) - allowed}"


# -- service root ----------------------------------------------------------------------------------------------------


def test_service_root_lists_every_entity_set_with_name_and_url(client: TestClient) -> None:
    """req/resource-path/resource-path-to-entities; 18-088 9.2.1: the service root lists the entity sets."""
    root = get(client, BASE)
    listed = {e["name"]: e["url"] for e in root["value"]}
    assert listed == {name: f"{BASE}/{name}" for name in ENTITY_SETS}
    for url in listed.values():
        assert "value" in get(client, url)


def test_service_root_without_slash_and_with_slash(client: TestClient) -> None:
    assert get(client, BASE) == get(client, BASE + "/")


def test_service_root_lists_conformance_classes(client: TestClient) -> None:
    """18-088 9.2.1: serverSettings.conformance lists the implemented requirement classes."""
    conformance = get(client, BASE)["serverSettings"]["conformance"]
    assert isinstance(conformance, list)
    for cls in (
        "datamodel",
        "resource-path/resource-path-to-entities",
        "create-update-delete",
        "batch-request/batch-request",
        "data-array/data-array",
        "multi-datastream",
    ):
        assert REQ + cls in conformance


def test_service_root_lists_request_data_conformance(client: TestClient) -> None:
    """The server implements $filter/$orderby/$expand/…, so it must announce the request-data class."""
    assert REQ + "request-data" in get(client, BASE)["serverSettings"]["conformance"]


# -- entities: collections, single entities, properties and control information -------------------------------------


@pytest.mark.parametrize("set_name", ENTITY_SETS)
def test_collection_of_every_entity_set(world: TestClient, set_name: str) -> None:
    """req/resource-path/resource-path-to-entities (collection): a JSON object with a value array."""
    doc = get(world, set_name)
    assert isinstance(doc["value"], list) and doc["value"]
    for e in doc["value"]:
        check_entity(set_name, e)


@pytest.mark.parametrize("set_name", ENTITY_SETS)
def test_single_entity_of_every_entity_set(world: TestClient, set_name: str) -> None:
    """req/resource-path (entity by id) and req/datamodel (every property, control information)."""
    first = get(world, set_name)["value"][0]
    e = get(world, f"{set_name}({first['@iot.id']})")
    check_entity(set_name, e)
    assert e == first


@pytest.mark.parametrize("set_name", ENTITY_SETS)
def test_self_link_of_every_entity_resolves_to_itself(world: TestClient, set_name: str) -> None:
    for e in get(world, set_name)["value"]:
        assert get(world, e["@iot.selfLink"]) == e


@pytest.mark.parametrize("set_name", ENTITY_SETS)
def test_navigation_links_resolve(world: TestClient, set_name: str) -> None:
    """Every navigation link GETs 200: a collection for to-many, an entity of the right set for to-one.

    An Observation of a Datastream has no MultiDatastream and vice versa; those empty to-one links are skipped.
    """
    for e in get(world, set_name)["value"]:
        for rel, (target, many) in RELATIONS[set_name].items():
            link = e[f"{rel}@iot.navigationLink"]
            if set_name == "Observations" and rel in ("Datastream", "MultiDatastream"):
                owner = "MultiDatastream" if isinstance(e["result"], list) else "Datastream"
                if rel != owner:
                    continue
            doc = get(world, link)
            if many:
                assert isinstance(doc["value"], list)
                for related in doc["value"]:
                    check_entity(target, related)
            else:
                check_entity(target, doc)


def test_observation_time_formats(world: TestClient) -> None:
    """req/datamodel/observation: ISO 8601 instants; Datastream phenomenonTime/resultTime are intervals."""
    obs = get(world, "Observations(2)")
    assert INSTANT.match(obs["phenomenonTime"]) and INSTANT.match(obs["resultTime"])
    assert obs["phenomenonTime"].startswith("2026-01-01T11:00:00")
    ds = get(world, "Datastreams(1)")
    assert INTERVAL.match(ds["phenomenonTime"]), ds["phenomenonTime"]
    assert INTERVAL.match(ds["resultTime"]), ds["resultTime"]
    assert INSTANT.match(get(world, "HistoricalLocations(1)")["time"])


def test_values_round_trip(world: TestClient) -> None:
    """What was created is what is read back, JSON types included."""
    thing = get(world, "Things(1)")
    assert thing["name"] == "Well 1" and thing["properties"] == {"buurt": "Roombeek"}
    ds = get(world, "Datastreams(1)")
    assert ds["unitOfMeasurement"] == f.UNIT_M and ds["observationType"] == f.MEASUREMENT
    assert get(world, "Locations(1)")["location"] == f.POINT
    assert get(world, "Observations(1)")["result"] == 0.41
    assert get(world, "Observations(7)")["result"] == [0.5, 0.6]
    mds = get(world, "MultiDatastreams(1)")
    assert mds["unitOfMeasurements"] == [f.UNIT_M, f.UNIT_M]
    assert mds["multiObservationDataTypes"] == [f.MEASUREMENT, f.MEASUREMENT]


# -- navigation -------------------------------------------------------------------------------------------------------


def test_navigation_to_many_two_steps(world: TestClient) -> None:
    """req/resource-path: Things(1)/Datastreams(2)/Observations."""
    assert sorted(ids(get(world, "Things(1)/Datastreams(2)/Observations"))) == [4, 5]
    assert sorted(ids(get(world, "Things(1)/Datastreams"))) == [1, 2]
    assert ids(get(world, "Things(2)/Datastreams(3)/Observations")) == [6]


def test_navigation_to_one_several_steps(world: TestClient) -> None:
    """Observations(1)/Datastream/Thing/Locations: to-one, to-one, to-many."""
    assert ids(get(world, "Observations(1)/Datastream/Thing/Locations")) == [1]
    assert ids(get(world, "Observations(6)/Datastream/Thing/Locations")) == [2]
    assert get(world, "Observations(6)/Datastream/Thing")["name"] == "Well 2"
    assert get(world, "Observations(4)/Datastream/Sensor")["@iot.id"] == 1
    assert get(world, "Observations(7)/MultiDatastream/Thing")["@iot.id"] == 1


def test_navigation_deep_and_back(world: TestClient) -> None:
    path = "Things(1)/Datastreams(1)/Observations(2)/FeatureOfInterest/Observations"
    assert sorted(ids(get(world, path))) == [2, 3, 4, 5, 7]
    assert get(world, "Things(2)/Locations(2)/Things(2)/Datastreams(3)/Sensor")["name"] == "Diver"
    assert sorted(ids(get(world, "Sensors(1)/Datastreams(2)/Thing/HistoricalLocations"))) == [1]
    assert sorted(ids(get(world, "MultiDatastreams(1)/ObservedProperties"))) == [1, 2]


def test_navigation_to_an_empty_collection_is_an_empty_value(world: TestClient) -> None:
    assert get(world, "Things(2)/MultiDatastreams") == {"value": []}


def test_navigation_single_entity_in_collection(world: TestClient) -> None:
    obs = get(world, "Datastreams(1)/Observations(3)")
    assert obs == get(world, "Observations(3)")


# -- properties and $value -------------------------------------------------------------------------------------------


def test_property_path_is_a_json_object(world: TestClient) -> None:
    """req/resource-path: Things(1)/name -> {"name": ...}."""
    assert get(world, "Things(1)/name") == {"name": "Well 1"}
    assert get(world, "Things(1)/properties") == {"properties": {"buurt": "Roombeek"}}
    assert get(world, "Locations(1)/location") == {"location": f.POINT}
    assert get(world, "Observations(7)/result") == {"result": [0.5, 0.6]}
    assert get(world, "Datastreams(1)/Thing/description") == {"description": "groundwater well"}


def test_property_value_is_plain_text(world: TestClient) -> None:
    """req/resource-path: Things(1)/name/$value is the raw value."""
    r = world.get(f"{BASE}/Things(1)/name/$value")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Well 1"
    r = world.get(f"{BASE}/Observations(1)/result/$value")
    assert r.status_code == 200 and r.text == "0.41"
    r = world.get(f"{BASE}/Things(2)/Datastreams(3)/name/$value")
    assert r.status_code == 200 and r.text == "level 3"


def test_unknown_property_is_404(world: TestClient) -> None:
    get(world, "Things(1)/colour", 404)
    get(world, "Things(1)/colour/$value", 404)


# -- $ref -------------------------------------------------------------------------------------------------------------


def test_ref_on_collection(world: TestClient) -> None:
    """Things(1)/Datastreams/$ref: only the selfLinks."""
    doc = get(world, "Things(1)/Datastreams/$ref")
    assert sorted(doc["value"], key=lambda e: e["@iot.selfLink"]) == [
        {"@iot.selfLink": f"{BASE}/Datastreams(1)"},
        {"@iot.selfLink": f"{BASE}/Datastreams(2)"},
    ]
    doc = get(world, "Things/$ref")
    assert [e for e in doc["value"] if set(e) != {"@iot.selfLink"}] == []
    assert sorted(e["@iot.selfLink"] for e in doc["value"]) == [f"{BASE}/Things(1)", f"{BASE}/Things(2)"]


def test_ref_on_single_relation(world: TestClient) -> None:
    assert get(world, "Datastreams(3)/Thing/$ref") == {"@iot.selfLink": f"{BASE}/Things(2)"}
    assert get(world, "Observations(5)/Datastream/$ref") == {"@iot.selfLink": f"{BASE}/Datastreams(2)"}


def test_ref_with_count_and_top(world: TestClient) -> None:
    doc = get(world, "Datastreams(1)/Observations/$ref?$count=true&$top=1")
    assert doc["@iot.count"] == 3
    assert len(doc["value"]) == 1 and set(doc["value"][0]) == {"@iot.selfLink"}


# -- 404 --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("set_name", ENTITY_SETS)
def test_missing_id_is_404(world: TestClient, set_name: str) -> None:
    get(world, f"{set_name}(999)", 404)
    get(world, f"{set_name}(999)/{next(iter(RELATIONS[set_name]))}", 404)


@pytest.mark.parametrize(
    "path",
    [
        "Things(1)/Datastreams(99)",
        "Things(1)/Datastreams(3)",  # exists, but belongs to Thing 2
        "Things(1)/Datastreams(3)/Observations",
        "Things(2)/Locations(1)",
        "Datastreams(1)/Observations(4)",
        "Datastreams(1)/Observations(4)/FeatureOfInterest",
        "Things(99)/Datastreams",
        "Things(1)/Datastreams(1)/Observations(6)",
        "Things(1)/Datastreams(99)/name",
        "Things(1)/Datastreams(3)/$ref",
        "Sensors(2)/Datastreams(1)/Thing",
    ],
)
def test_navigation_step_that_does_not_belong_is_404(world: TestClient, path: str) -> None:
    get(world, path, 404)


def test_unknown_entity_set_is_404(client: TestClient) -> None:
    get(client, "Thingies", 404)
    get(client, "Thingies(1)", 404)


def test_error_body_is_json(world: TestClient) -> None:
    r = world.get(f"{BASE}/Things(999)")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json()["message"], str)


# -- $top, $skip, $count, nextLink ------------------------------------------------------------------------------------


def make_things(client: TestClient, n: int) -> None:
    for i in range(n):
        post(client, "Things", f.thing(f"thing {i:02d}"))


def test_top_and_skip(client: TestClient) -> None:
    """req/request-data/top and skip."""
    make_things(client, 7)
    all_ids = ids(get(client, "Things?$orderby=id"))
    assert all_ids == [1, 2, 3, 4, 5, 6, 7]
    assert ids(get(client, "Things?$orderby=id&$top=3")) == [1, 2, 3]
    assert ids(get(client, "Things?$orderby=id&$skip=5")) == [6, 7]
    assert ids(get(client, "Things?$orderby=id&$top=2&$skip=3")) == [4, 5]
    assert ids(get(client, "Things?$skip=10")) == []


def test_count(client: TestClient) -> None:
    """req/request-data/count: @iot.count is the size of the whole result, regardless of $top and $skip."""
    make_things(client, 5)
    doc = get(client, "Things?$count=true&$top=2&$skip=1")
    assert doc["@iot.count"] == 5 and len(doc["value"]) == 2
    assert "@iot.count" not in get(client, "Things?$count=false")
    assert "@iot.count" not in get(client, "Things")


def test_count_on_navigation_collection(world: TestClient) -> None:
    assert get(world, "Datastreams(1)/Observations?$count=true&$top=1")["@iot.count"] == 3
    assert get(world, "Things(1)/Datastreams?$count=true")["@iot.count"] == 2


def follow_pages(client: TestClient, url: str) -> tuple[list[int], int]:
    """Follow @iot.nextLink until it is gone: every id seen, and the number of pages."""
    seen: list[int] = []
    pages = 0
    while url:
        doc = get(client, url)
        pages += 1
        assert pages < 100, "nextLink does not end"
        assert doc["value"] or "@iot.nextLink" not in doc
        seen.extend(ids(doc))
        url = doc.get("@iot.nextLink")
    return seen, pages


def test_next_link_pages_through_everything_once(client: TestClient) -> None:
    """req/request-data/pagination: following @iot.nextLink yields every entity exactly once."""
    make_things(client, 11)
    doc = get(client, "Things?$top=3")
    assert doc["@iot.nextLink"].startswith(f"{BASE}/Things?")
    seen, pages = follow_pages(client, f"{BASE}/Things?$top=3")
    assert sorted(seen) == list(range(1, 12))
    assert len(seen) == len(set(seen))
    assert pages == 4


def test_next_link_absent_when_everything_fits(client: TestClient) -> None:
    make_things(client, 3)
    assert "@iot.nextLink" not in get(client, "Things?$top=3")
    assert "@iot.nextLink" not in get(client, "Things")


@pytest.mark.parametrize("order", ["name desc", "name asc", "description,id desc"])
def test_next_link_keeps_order_and_options(client: TestClient, order: str) -> None:
    make_things(client, 9)
    full = ids(get(client, f"Things?$orderby={order}"))
    seen, _ = follow_pages(client, f"{BASE}/Things?$orderby={order}&$top=2")
    assert seen == full


def test_next_link_with_skip_and_count(client: TestClient) -> None:
    make_things(client, 8)
    doc = get(client, "Things?$orderby=id&$top=3&$skip=2&$count=true")
    assert ids(doc) == [3, 4, 5] and doc["@iot.count"] == 8
    seen, _ = follow_pages(client, f"{BASE}/Things?$orderby=id&$top=3&$skip=2&$count=true")
    assert seen == [3, 4, 5, 6, 7, 8]
    second = get(client, doc["@iot.nextLink"])
    assert second["@iot.count"] == 8, "@iot.count is the total on every page"


def test_next_link_on_ref_collection(client: TestClient) -> None:
    """req/request-data/pagination holds for $ref collections too: a partial result links to the rest."""
    make_things(client, 7)
    links: list[str] = []
    url = f"{BASE}/Things/$ref?$top=3"
    while url:
        doc = get(client, url)
        assert all(set(e) == {"@iot.selfLink"} for e in doc["value"])
        links.extend(e["@iot.selfLink"] for e in doc["value"])
        url = doc.get("@iot.nextLink")
        assert len(links) <= 7
    assert sorted(links) == sorted(f"{BASE}/Things({i})" for i in range(1, 8))


def test_next_link_on_navigation_collection(world: TestClient) -> None:
    seen, pages = follow_pages(world, f"{BASE}/Things(1)/Datastreams(1)/Observations?$top=1")
    assert sorted(seen) == [1, 2, 3] and pages == 3


# -- $orderby ---------------------------------------------------------------------------------------------------------


def test_orderby_asc_and_desc(world: TestClient) -> None:
    """req/request-data/order."""
    results = [o["result"] for o in get(world, "Datastreams(1)/Observations?$orderby=result")["value"]]
    assert results == [0.41, 0.42, 0.43]
    results = [o["result"] for o in get(world, "Datastreams(1)/Observations?$orderby=result desc")["value"]]
    assert results == [0.43, 0.42, 0.41]
    times = [o["phenomenonTime"] for o in get(world, "Observations?$orderby=phenomenonTime desc")["value"]]
    assert times == sorted(times, reverse=True) and len(times) == 7


def test_orderby_strings_and_several_keys(client: TestClient) -> None:
    for name, desc in [("b", "x"), ("a", "y"), ("c", "x"), ("a", "x")]:
        post(client, "Things", {"name": name, "description": desc})
    assert [t["name"] for t in get(client, "Things?$orderby=name asc")["value"]] == ["a", "a", "b", "c"]
    assert [t["name"] for t in get(client, "Things?$orderby=name desc")["value"]] == ["c", "b", "a", "a"]
    assert ids(get(client, "Things?$orderby=description desc,name asc")) == [2, 4, 1, 3]
    assert ids(get(client, "Things?$orderby=id desc")) == [4, 3, 2, 1]


# -- $select ----------------------------------------------------------------------------------------------------------


def test_select_returns_only_the_selected_properties(world: TestClient) -> None:
    """req/request-data/select."""
    doc = get(world, "Observations?$select=result,phenomenonTime")
    assert len(doc["value"]) == 7
    for o in doc["value"]:
        assert set(o) == {"result", "phenomenonTime"}
    assert get(world, "Things(1)?$select=name") == {"name": "Well 1"}


def test_select_id_and_navigation_property(world: TestClient) -> None:
    doc = get(world, "Things?$select=id,Datastreams&$orderby=id")
    assert doc["value"] == [
        {"@iot.id": 1, "Datastreams@iot.navigationLink": f"{BASE}/Things(1)/Datastreams"},
        {"@iot.id": 2, "Datastreams@iot.navigationLink": f"{BASE}/Things(2)/Datastreams"},
    ]


# -- $expand ----------------------------------------------------------------------------------------------------------


def test_expand_to_many(world: TestClient) -> None:
    """req/request-data/expand: the related entities inline, in full."""
    doc = get(world, "Things?$expand=Datastreams&$orderby=id")
    assert [sorted(ids({"value": t["Datastreams"]})) for t in doc["value"]] == [[1, 2], [3]]
    for t in doc["value"]:
        check_entity("Things", t, ("Datastreams",))
        for ds in t["Datastreams"]:
            check_entity("Datastreams", ds)


def test_expand_to_one(world: TestClient) -> None:
    doc = get(world, "Datastreams(3)?$expand=Thing")
    assert doc["Thing"] == get(world, "Things(2)")
    doc = get(world, "Observations?$expand=Datastream&$orderby=id&$top=6")
    assert [o["Datastream"]["@iot.id"] for o in doc["value"]] == [1, 1, 1, 2, 2, 3]


def test_expand_several_relations(world: TestClient) -> None:
    doc = get(world, "Datastreams(1)?$expand=Sensor,ObservedProperty,Observations")
    assert doc["Sensor"]["name"] == "Keller 36XW"
    assert doc["ObservedProperty"]["name"] == "groundwater level"
    assert sorted(ids({"value": doc["Observations"]})) == [1, 2, 3]
    check_entity("Datastreams", doc, ("Sensor", "ObservedProperty", "Observations"))


def test_expand_empty_collection(world: TestClient) -> None:
    assert get(world, "Things(2)?$expand=MultiDatastreams")["MultiDatastreams"] == []


def test_expand_on_navigation_path(world: TestClient) -> None:
    doc = get(world, "Things(1)/Datastreams?$expand=Observations&$orderby=id")
    assert [sorted(o["result"] for o in ds["Observations"]) for ds in doc["value"]] == [[0.41, 0.42, 0.43], [1.1, 1.2]]
