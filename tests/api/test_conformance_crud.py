"""Conformance: SensorThings API 1.1 create-update-delete (OGC 18-088 clause 10, req/create-update-delete/...)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import fixtures as f
from tests.conftest import BASE

SETS = (
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
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
FEATURE = {"name": "screen", "description": "filter", "encodingType": "application/geo+json", "feature": f.POINT}
OTHER_POINT = {"type": "Point", "coordinates": [6.79, 52.26]}


# -- helpers ---------------------------------------------------------------------------------------------------------


def url(path: str) -> str:
    return path if path.startswith("http") else f"{BASE}/{path}"


def get(client: TestClient, path: str, status: int = 200) -> Any:
    r = client.get(url(path))
    assert r.status_code == status, f"GET {path}: {r.status_code} {r.text}"
    return r.json() if status == 200 else None


def post(client: TestClient, path: str, body: Any, status: int = 201) -> dict[str, Any]:
    r = client.post(url(path), json=body)
    assert r.status_code == status, f"POST {path}: {r.status_code} {r.text}"
    return r.json()  # type: ignore[no-any-return]


def patch(client: TestClient, path: str, body: Any, status: int = 200) -> None:
    r = client.patch(url(path), json=body)
    assert r.status_code == status, f"PATCH {path}: {r.status_code} {r.text}"


def delete(client: TestClient, path: str, status: int = 200) -> None:
    r = client.delete(url(path))
    assert r.status_code == status, f"DELETE {path}: {r.status_code} {r.text}"


def ids(client: TestClient, path: str) -> list[int]:
    return sorted(e["@iot.id"] for e in get(client, path)["value"])


def counts(client: TestClient) -> dict[str, int]:
    return {s: get(client, f"{s}?$count=true&$top=1")["@iot.count"] for s in SETS}


def setup_thing(client: TestClient) -> None:
    """Thing 1 with Location 1 and Datastream 1 (Sensor 1, ObservedProperty 1)."""
    post(client, "Things", f.full_thing())


def obs(result: Any = 1.0, **extra: Any) -> dict[str, Any]:
    return {"result": result, "Datastream": {"@iot.id": 1}, **extra}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def multi_datastream(**links: Any) -> dict[str, Any]:
    return {
        "name": "level and temperature",
        "description": "two values",
        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation",
        "unitOfMeasurements": [f.UNIT_M],
        "multiObservationDataTypes": [f.MEASUREMENT],
        **links,
    }


# -- create -----------------------------------------------------------------------------------------------------------


def created_bodies() -> list[tuple[str, dict[str, Any]]]:
    """One body per entity set, valid once setup_thing has run."""
    return [
        ("Things", f.thing("t2")),
        ("Locations", f.location("l2")),
        (
            "HistoricalLocations",
            {"time": "2026-01-01T00:00:00Z", "Thing": {"@iot.id": 1}, "Locations": [{"@iot.id": 1}]},
        ),
        ("Sensors", f.sensor("s2")),
        ("ObservedProperties", f.observed_property("op2")),
        ("Datastreams", f.datastream(Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1})),
        (
            "MultiDatastreams",
            multi_datastream(Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperties=[{"@iot.id": 1}]),
        ),
        ("FeaturesOfInterest", FEATURE),
        ("Observations", obs(3.5, phenomenonTime="2026-01-01T10:00:00Z")),
    ]


@pytest.mark.parametrize(("set_name", "body"), created_bodies(), ids=[s for s, _ in created_bodies()])
def test_post_creates_entity(client: TestClient, set_name: str, body: dict[str, Any]) -> None:
    """req/create-update-delete/create-entity: 201, Location header = selfLink, the entity in the body."""
    setup_thing(client)
    before = counts(client)[set_name]
    r = client.post(url(set_name), json=body)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert isinstance(doc["@iot.id"], int)
    assert r.headers["Location"] == doc["@iot.selfLink"] == f"{BASE}/{set_name}({doc['@iot.id']})"
    for key, value in body.items():
        if not isinstance(value, (dict, list)) or key in ("properties", "location", "feature", "unitOfMeasurement"):
            if key in ("time", "phenomenonTime"):
                assert parse_time(doc[key]) == parse_time(value)
            else:
                assert doc[key] == value, key
    assert get(client, r.headers["Location"]) == doc
    assert counts(client)[set_name] == before + 1


def test_post_related_entity_through_navigation_path(client: TestClient) -> None:
    """req/create-update-delete/create-related-entities: POST Datastreams(1)/Observations links to Datastream 1."""
    setup_thing(client)
    doc = post(client, "Datastreams(1)/Observations", {"result": 7, "phenomenonTime": "2026-01-01T00:00:00Z"})
    assert get(client, f"Observations({doc['@iot.id']})/Datastream")["@iot.id"] == 1
    ds = post(
        client, "Things(1)/Datastreams", f.datastream("d2", Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1})
    )
    assert get(client, f"Datastreams({ds['@iot.id']})/Thing")["@iot.id"] == 1


def test_post_to_missing_parent_is_404(client: TestClient) -> None:
    setup_thing(client)
    post(client, "Datastreams(9)/Observations", {"result": 7}, 404)


def test_post_with_client_id_is_400(client: TestClient) -> None:
    r = client.post(url("Things"), json={"@iot.id": 5, **f.thing()})
    assert r.status_code == 400


# -- deep insert ------------------------------------------------------------------------------------------------------


def test_deep_insert_thing_with_everything(client: TestClient) -> None:
    """req/create-update-delete/deep-insert: Thing, Locations, Datastreams, Sensor, ObservedProperty, Observations."""
    body = f.thing(
        Locations=[f.location()],
        Datastreams=[
            f.datastream(
                "a",
                Sensor=f.sensor(),
                ObservedProperty=f.observed_property(),
                Observations=[
                    {"result": 1, "phenomenonTime": "2026-01-01T00:00:00Z"},
                    {"result": 2, "phenomenonTime": "2026-01-01T01:00:00Z", "FeatureOfInterest": FEATURE},
                ],
            ),
            f.datastream("b", Sensor=f.sensor("s2"), ObservedProperty=f.observed_property("op2")),
        ],
    )
    thing = post(client, "Things", body)
    tid = thing["@iot.id"]
    assert counts(client) == {
        "Things": 1,
        "Locations": 1,
        "HistoricalLocations": 1,
        "Datastreams": 2,
        "MultiDatastreams": 0,
        "Sensors": 2,
        "ObservedProperties": 2,
        "Observations": 2,
        "FeaturesOfInterest": 2,
    }
    assert [d["name"] for d in get(client, f"Things({tid})/Datastreams?$orderby=name")["value"]] == ["a", "b"]
    assert get(client, f"Things({tid})/Locations")["value"][0]["location"] == f.POINT
    ds_a = get(client, f"Things({tid})/Datastreams?$filter=name eq 'a'")["value"][0]["@iot.id"]
    assert sorted(o["result"] for o in get(client, f"Datastreams({ds_a})/Observations")["value"]) == [1, 2]
    assert get(client, f"Datastreams({ds_a})/Sensor")["name"] == "Keller 36XW"
    assert get(client, f"Datastreams({ds_a})/ObservedProperty")["name"] == "groundwater level"
    assert get(client, f"Things({tid})/HistoricalLocations/$ref")["value"]


def test_deep_insert_observation_with_datastream_and_feature(client: TestClient) -> None:
    """Deep insert from the bottom: an Observation with a new Datastream (and its Thing, Sensor, ObservedProperty)."""
    body = {
        "result": 5,
        "FeatureOfInterest": FEATURE,
        "Datastream": f.datastream(
            Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
        ),
    }
    doc = post(client, "Observations", body)
    oid = doc["@iot.id"]
    assert get(client, f"Observations({oid})/Datastream/Thing/Locations")["value"][0]["name"] == "Roombeek 12"
    assert get(client, f"Observations({oid})/FeatureOfInterest")["name"] == "screen"
    assert counts(client)["Things"] == 1


def test_deep_insert_location_with_thing(client: TestClient) -> None:
    loc = post(client, "Locations", {**f.location(), "Things": [f.thing("t")]})
    things = get(client, f"Locations({loc['@iot.id']})/Things")["value"]
    assert [t["name"] for t in things] == ["t"]
    assert len(get(client, f"Things({things[0]['@iot.id']})/HistoricalLocations")["value"]) == 1


def test_nested_links_by_id(client: TestClient) -> None:
    """req/create-update-delete/link-to-existing-entities: {"@iot.id": n} links instead of creating."""
    setup_thing(client)
    before = counts(client)
    ds = post(
        client,
        "Datastreams",
        f.datastream("linked", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1}),
    )
    after = counts(client)
    assert after == {**before, "Datastreams": before["Datastreams"] + 1}
    assert get(client, f"Datastreams({ds['@iot.id']})/Sensor")["@iot.id"] == 1


def test_nested_links_ignore_other_members(client: TestClient) -> None:
    """frost-sta-client sends the whole linked entity; only @iot.id counts, nothing is changed or created."""
    setup_thing(client)
    thing = get(client, "Things(1)")
    sensor = {**get(client, "Sensors(1)"), "name": "renamed?"}
    before = counts(client)
    ds = post(
        client,
        "Datastreams",
        f.datastream("linked", Thing=thing, Sensor=sensor, ObservedProperty={"@iot.id": "1", "name": "x"}),
    )
    assert counts(client)["Sensors"] == before["Sensors"]
    assert get(client, "Sensors(1)")["name"] == "Keller 36XW"
    assert get(client, f"Datastreams({ds['@iot.id']})/ObservedProperty")["name"] == "groundwater level"
    assert get(client, f"Datastreams({ds['@iot.id']})/Thing") == thing


def test_nested_link_to_missing_id_is_400(client: TestClient) -> None:
    setup_thing(client)
    before = counts(client)
    body = f.datastream(Thing={"@iot.id": 1}, Sensor={"@iot.id": 99}, ObservedProperty={"@iot.id": 1})
    post(client, "Datastreams", body, 400)
    assert counts(client) == before


# -- integrity rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Thing", "Sensor", "ObservedProperty"])
def test_datastream_without_mandatory_relation_is_400(client: TestClient, missing: str) -> None:
    """req/create-update-delete/create-entity: a Datastream needs its Thing, Sensor and ObservedProperty."""
    setup_thing(client)
    links: dict[str, Any] = {"Thing": {"@iot.id": 1}, "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}
    del links[missing]
    before = counts(client)
    r = client.post(url("Datastreams"), json=f.datastream(**links))
    assert r.status_code == 400
    assert missing in r.json()["message"]
    assert counts(client) == before


def test_observation_without_datastream_is_400(client: TestClient) -> None:
    setup_thing(client)
    before = counts(client)
    post(client, "Observations", {"result": 1, "FeatureOfInterest": FEATURE}, 400)
    assert counts(client) == before


def test_missing_required_property_is_400(client: TestClient) -> None:
    post(client, "Things", {"description": "no name"}, 400)
    post(client, "Locations", {"name": "x", "description": "y", "encodingType": "application/geo+json"}, 400)
    assert counts(client)["Things"] == 0


def test_feature_of_interest_is_derived_from_location_and_reused(client: TestClient) -> None:
    """10.2.1: an Observation without FeatureOfInterest gets one from its Thing's Location, once."""
    setup_thing(client)
    first = post(client, "Observations", obs(1))
    second = post(client, "Observations", obs(2))
    foi1 = get(client, f"Observations({first['@iot.id']})/FeatureOfInterest")
    foi2 = get(client, f"Observations({second['@iot.id']})/FeatureOfInterest")
    assert foi1 == foi2
    assert foi1["feature"] == f.POINT
    assert foi1["encodingType"] == "application/geo+json"
    assert counts(client)["FeaturesOfInterest"] == 1
    assert ids(client, f"FeaturesOfInterest({foi1['@iot.id']})/Observations") == [1, 2]


def test_derived_feature_follows_new_location(client: TestClient) -> None:
    setup_thing(client)
    post(client, "Observations", obs(1))
    patch(client, "Things(1)", {"Locations": [f.location("moved", OTHER_POINT)]})
    later = post(client, "Observations", obs(2))
    assert get(client, f"Observations({later['@iot.id']})/FeatureOfInterest")["feature"] == OTHER_POINT
    assert counts(client)["FeaturesOfInterest"] == 2


def test_explicit_feature_of_interest_is_used(client: TestClient) -> None:
    setup_thing(client)
    foi = post(client, "FeaturesOfInterest", FEATURE)
    o = post(client, "Observations", obs(1, FeatureOfInterest={"@iot.id": foi["@iot.id"]}))
    assert get(client, f"Observations({o['@iot.id']})/FeatureOfInterest")["@iot.id"] == foi["@iot.id"]
    assert counts(client)["FeaturesOfInterest"] == 1


def test_observation_defaults(client: TestClient) -> None:
    """phenomenonTime defaults to the server time; resultTime stays null when omitted."""
    setup_thing(client)
    start = datetime.now(UTC) - timedelta(seconds=5)
    o = post(client, "Observations", obs(1))
    assert o["resultTime"] is None
    t = parse_time(o["phenomenonTime"])
    assert start <= t <= datetime.now(UTC) + timedelta(seconds=5)
    assert get(client, f"Observations({o['@iot.id']})")["resultTime"] is None


def test_observation_interval_phenomenon_time(client: TestClient) -> None:
    setup_thing(client)
    o = post(client, "Observations", obs(1, phenomenonTime="2026-01-01T00:00:00Z/2026-01-01T01:00:00Z"))
    start, end = o["phenomenonTime"].split("/")
    assert parse_time(start) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time(end) == datetime(2026, 1, 1, 1, tzinfo=UTC)


def hl_locations(client: TestClient, thing: int = 1) -> list[list[int]]:
    """The Location ids of each HistoricalLocation of the Thing, oldest first."""
    doc = get(client, f"Things({thing})/HistoricalLocations?$orderby=time,id&$expand=Locations")
    return [sorted(loc["@iot.id"] for loc in hl["Locations"]) for hl in doc["value"]]


def test_historical_location_on_create_with_locations(client: TestClient) -> None:
    """10.2.1: creating a Thing with Locations records a HistoricalLocation."""
    setup_thing(client)
    assert hl_locations(client) == [[1]]
    post(client, "Things", f.thing("no location"))
    assert get(client, "Things(2)/HistoricalLocations") == {"value": []}


def test_historical_location_when_locations_change(client: TestClient) -> None:
    setup_thing(client)
    loc = post(client, "Locations", f.location("second", OTHER_POINT))
    patch(client, "Things(1)", {"Locations": [{"@iot.id": loc["@iot.id"]}]})
    assert ids(client, "Things(1)/Locations") == [loc["@iot.id"]]
    assert hl_locations(client) == [[1], [loc["@iot.id"]]]
    hl = get(client, "Things(1)/HistoricalLocations?$orderby=time desc,id desc")["value"][0]
    assert parse_time(hl["time"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_historical_location_when_location_posted_for_thing(client: TestClient) -> None:
    setup_thing(client)
    loc = post(client, "Things(1)/Locations", f.location("third", OTHER_POINT))
    assert loc["@iot.id"] in ids(client, "Things(1)/Locations")
    assert hl_locations(client)[-1] == [loc["@iot.id"]]
    assert len(hl_locations(client)) == 2


def test_patch_without_locations_records_no_historical_location(client: TestClient) -> None:
    setup_thing(client)
    patch(client, "Things(1)", {"name": "renamed"})
    assert len(hl_locations(client)) == 1


def test_datastream_times_and_area_follow_observations(client: TestClient) -> None:
    """req/datamodel/datastream: phenomenonTime, resultTime and observedArea are derived from the Observations."""
    setup_thing(client)
    ds = get(client, "Datastreams(1)")
    assert ds["phenomenonTime"] is None and ds["resultTime"] is None and ds["observedArea"] is None
    post(client, "Observations", obs(1, phenomenonTime="2026-01-02T00:00:00Z", resultTime="2026-01-02T00:05:00Z"))
    post(client, "Observations", obs(2, phenomenonTime="2026-01-01T00:00:00Z/2026-01-01T06:00:00Z"))
    post(client, "Observations", obs(3, phenomenonTime="2026-01-03T00:00:00Z", resultTime="2026-01-03T00:05:00Z"))
    ds = get(client, "Datastreams(1)")
    assert [parse_time(t) for t in ds["phenomenonTime"].split("/")] == [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 3, tzinfo=UTC),
    ]
    assert [parse_time(t) for t in ds["resultTime"].split("/")] == [
        datetime(2026, 1, 2, 0, 5, tzinfo=UTC),
        datetime(2026, 1, 3, 0, 5, tzinfo=UTC),
    ]
    area = ds["observedArea"]
    assert area["type"] in ("Point", "Polygon")
    assert re.sub(r"\s", "", str(area)).count("6.8937") >= 1
    delete(client, "Observations(3)")
    ds = get(client, "Datastreams(1)")
    assert parse_time(ds["phenomenonTime"].split("/")[1]) == datetime(2026, 1, 2, tzinfo=UTC)
    assert [parse_time(t) for t in ds["resultTime"].split("/")] == [datetime(2026, 1, 2, 0, 5, tzinfo=UTC)] * 2
    delete(client, "Observations(1)")
    delete(client, "Observations(2)")
    ds = get(client, "Datastreams(1)")
    assert ds["phenomenonTime"] is None and ds["resultTime"] is None and ds["observedArea"] is None


def test_datastream_times_follow_updated_observation(client: TestClient) -> None:
    setup_thing(client)
    post(client, "Observations", obs(1, phenomenonTime="2026-01-02T00:00:00Z"))
    patch(client, "Observations(1)", {"phenomenonTime": "2026-02-02T00:00:00Z"})
    ds = get(client, "Datastreams(1)")
    assert [parse_time(t) for t in ds["phenomenonTime"].split("/")] == [datetime(2026, 2, 2, tzinfo=UTC)] * 2


def test_observation_moved_to_other_datastream_updates_both(client: TestClient) -> None:
    setup_thing(client)
    post(client, "Things(1)/Datastreams", f.datastream("d2", Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1}))
    post(client, "Observations", obs(1, phenomenonTime="2026-01-01T00:00:00Z"))
    post(client, "Observations", obs(2, phenomenonTime="2026-01-05T00:00:00Z"))
    patch(client, "Observations(2)", {"Datastream": {"@iot.id": 2}})
    assert ids(client, "Datastreams(2)/Observations") == [2]
    first, second = get(client, "Datastreams(1)"), get(client, "Datastreams(2)")
    assert [parse_time(t) for t in first["phenomenonTime"].split("/")] == [datetime(2026, 1, 1, tzinfo=UTC)] * 2
    assert [parse_time(t) for t in second["phenomenonTime"].split("/")] == [datetime(2026, 1, 5, tzinfo=UTC)] * 2
    assert second["observedArea"] is not None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "Datastreams(2)", {"Observations": [{"@iot.id": 2}]}),  # from the Datastream's side
        ("POST", "Datastreams(2)/Observations/$ref", {"@iot.id": 2}),
        ("PUT", "Observations(2)/Datastream/$ref", {"@iot.id": 2}),
    ],
)
def test_observation_moved_by_a_link_updates_both(client: TestClient, method: str, path: str, body: Any) -> None:
    setup_thing(client)
    post(client, "Things(1)/Datastreams", f.datastream("d2", Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1}))
    post(client, "Observations", obs(1, phenomenonTime="2026-01-01T00:00:00Z"))
    post(client, "Observations", obs(2, phenomenonTime="2026-01-05T00:00:00Z"))
    r = client.request(method, url(path), json=body)
    assert r.status_code in (200, 204), r.text
    assert ids(client, "Datastreams(2)/Observations") == [2]
    first, second = get(client, "Datastreams(1)"), get(client, "Datastreams(2)")
    assert [parse_time(t) for t in first["phenomenonTime"].split("/")] == [datetime(2026, 1, 1, tzinfo=UTC)] * 2
    assert [parse_time(t) for t in second["phenomenonTime"].split("/")] == [datetime(2026, 1, 5, tzinfo=UTC)] * 2
    assert second["observedArea"] is not None


def test_feature_of_interest_changes_update_the_datastream(client: TestClient) -> None:
    """Deleting a FeatureOfInterest deletes its Observations; moving one to another feature moves the area."""
    setup_thing(client)
    far = post(client, "FeaturesOfInterest", {**FEATURE, "feature": OTHER_POINT})["@iot.id"]
    post(client, "Observations", obs(1, phenomenonTime="2026-01-01T00:00:00Z"))  # at the Location's feature
    post(client, "Observations", obs(2, phenomenonTime="2026-01-05T00:00:00Z", FeatureOfInterest={"@iot.id": far}))
    ds = get(client, "Datastreams(1)")
    assert ds["observedArea"]["type"] == "Polygon"  # the box around both points
    near = get(client, "Observations(1)/FeatureOfInterest")["@iot.id"]
    patch(client, f"FeaturesOfInterest({far})", {"Observations": [{"@iot.id": 1}]})  # both at the far point now
    assert get(client, "Datastreams(1)")["observedArea"] == OTHER_POINT
    patch(client, f"FeaturesOfInterest({near})", {"Observations": [{"@iot.id": 1}]})
    delete(client, f"FeaturesOfInterest({far})")
    ds = get(client, "Datastreams(1)")
    assert ids(client, "Datastreams(1)/Observations") == [1]
    assert [parse_time(t) for t in ds["phenomenonTime"].split("/")] == [datetime(2026, 1, 1, tzinfo=UTC)] * 2
    assert ds["observedArea"] == f.POINT
    delete(client, f"FeaturesOfInterest({near})")
    ds = get(client, "Datastreams(1)")
    assert ds["phenomenonTime"] is None and ds["observedArea"] is None


def test_changed_location_geometry_gives_new_derived_feature(client: TestClient) -> None:
    setup_thing(client)
    post(client, "Observations", obs(1))
    patch(client, "Locations(1)", {"location": OTHER_POINT})
    post(client, "Observations", obs(2))
    assert get(client, "Observations(1)/FeatureOfInterest")["feature"] == f.POINT
    assert get(client, "Observations(2)/FeatureOfInterest")["feature"] == OTHER_POINT


# -- update -----------------------------------------------------------------------------------------------------------


def test_patch_changes_only_given_members(client: TestClient) -> None:
    """req/create-update-delete/update-entity: PATCH; the response is 200 with the entity or 204."""
    setup_thing(client)
    r = client.patch(url("Things(1)"), json={"description": "new", "properties": {"depth": 3}})
    assert r.status_code in (200, 204)
    thing = get(client, "Things(1)")
    assert thing["description"] == "new" and thing["properties"] == {"depth": 3}
    assert thing["name"] == "Well Roombeek 12"
    if r.status_code == 200:
        assert r.json() == thing


def test_patch_relation_by_id(client: TestClient) -> None:
    setup_thing(client)
    sensor = post(client, "Sensors", f.sensor("other"))
    patch(client, "Datastreams(1)", {"Sensor": {"@iot.id": sensor["@iot.id"]}})
    assert get(client, "Datastreams(1)/Sensor")["@iot.id"] == sensor["@iot.id"]
    assert get(client, "Datastreams(1)")["name"] == "level"


def test_patch_invalid_is_400_and_changes_nothing(client: TestClient) -> None:
    setup_thing(client)
    before = get(client, "Things(1)")
    patch(client, "Things(1)", {"name": None}, 400)
    patch(client, "Things(1)", {"name": "x", "colour": "red"}, 400)
    patch(client, "Datastreams(1)", {"Sensor": {"@iot.id": 99}}, 400)
    assert get(client, "Things(1)") == before
    assert get(client, "Datastreams(1)/Sensor")["@iot.id"] == 1


def test_patch_missing_entity_is_404(client: TestClient) -> None:
    patch(client, "Things(9)", {"name": "x"}, 404)


def test_put_replaces(client: TestClient) -> None:
    """PUT replaces the entity: omitted optional properties become null (a null properties object is left out)."""
    setup_thing(client)
    r = client.put(url("Things(1)"), json={"name": "replaced", "description": "d"})
    assert r.status_code in (200, 204)
    thing = get(client, "Things(1)")
    assert (thing["name"], thing["description"], "properties" in thing) == ("replaced", "d", False)
    assert ids(client, "Things(1)/Datastreams") == [1]


def test_put_without_required_property_is_400(client: TestClient) -> None:
    setup_thing(client)
    r = client.put(url("Things(1)"), json={"name": "replaced"})
    assert r.status_code == 400
    assert get(client, "Things(1)")["name"] == "Well Roombeek 12"


def test_json_patch(client: TestClient) -> None:
    """req/create-update-delete/update-entity-jsonpatch: RFC 6902 with application/json-patch+json."""
    setup_thing(client)
    ops = [
        {"op": "replace", "path": "/name", "value": "patched"},
        {"op": "add", "path": "/properties/depth", "value": 4.5},
        {"op": "remove", "path": "/properties/buurt"},
        {"op": "copy", "from": "/name", "path": "/description"},
    ]
    r = client.patch(url("Things(1)"), json=ops, headers=JSON_PATCH)
    assert r.status_code in (200, 204), r.text
    thing = get(client, "Things(1)")
    assert (thing["name"], thing["description"], thing["properties"]) == ("patched", "patched", {"depth": 4.5})


def test_json_patch_failing_test_op_changes_nothing(client: TestClient) -> None:
    setup_thing(client)
    ops = [
        {"op": "replace", "path": "/name", "value": "patched"},
        {"op": "test", "path": "/description", "value": "no"},
    ]
    r = client.patch(url("Things(1)"), json=ops, headers=JSON_PATCH)
    assert r.status_code in (400, 409, 422)
    assert get(client, "Things(1)")["name"] == "Well Roombeek 12"


# -- delete -----------------------------------------------------------------------------------------------------------


def full_setup(client: TestClient) -> None:
    """Thing 1 (Location 1, Datastream 1 with Observations 1-2, MultiDatastream 1 with Observation 3),
    Thing 2 (Location 2, Datastream 2 with Observation 4, own Sensor 2 and ObservedProperty 2)."""
    setup_thing(client)
    post(client, "Observations", obs(1))
    post(client, "Observations", obs(2))
    post(
        client,
        "MultiDatastreams",
        multi_datastream(Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperties=[{"@iot.id": 1}]),
    )
    post(client, "Observations", {"result": [3], "MultiDatastream": {"@iot.id": 1}})
    post(
        client,
        "Things",
        f.thing(
            "t2",
            Locations=[f.location("l2", OTHER_POINT)],
            Datastreams=[
                f.datastream(
                    "d2",
                    Sensor=f.sensor("s2"),
                    ObservedProperty=f.observed_property("op2"),
                    Observations=[{"result": 4}],
                )
            ],
        ),
    )


def test_delete_entity(client: TestClient) -> None:
    """req/create-update-delete/delete-entity: 200, then 404."""
    full_setup(client)
    delete(client, "Observations(4)")
    get(client, "Observations(4)", 404)
    delete(client, "Observations(4)", 404)
    assert ids(client, "Observations") == [1, 2, 3]


def test_delete_thing_cascades(client: TestClient) -> None:
    full_setup(client)
    delete(client, "Things(1)")
    assert ids(client, "Things") == [2]
    assert ids(client, "Datastreams") == [2]
    assert ids(client, "MultiDatastreams") == []
    assert ids(client, "Observations") == [4]
    assert [hl["@iot.id"] for hl in get(client, "HistoricalLocations?$expand=Thing")["value"]] == [2]
    assert ids(client, "Locations") == [1, 2]  # Locations are not owned by the Thing
    assert ids(client, "Sensors") == [1, 2]


def test_delete_datastream_cascades_to_observations(client: TestClient) -> None:
    full_setup(client)
    delete(client, "Datastreams(1)")
    assert ids(client, "Observations") == [3, 4]
    assert ids(client, "Things(1)/Datastreams") == []
    assert ids(client, "Things") == [1, 2]


def test_delete_sensor_cascades(client: TestClient) -> None:
    full_setup(client)
    delete(client, "Sensors(1)")
    assert ids(client, "Datastreams") == [2]
    assert ids(client, "MultiDatastreams") == []
    assert ids(client, "Observations") == [4]


def test_delete_observed_property_cascades(client: TestClient) -> None:
    full_setup(client)
    delete(client, "ObservedProperties(1)")
    assert ids(client, "Datastreams") == [2]
    assert ids(client, "MultiDatastreams") == []
    assert ids(client, "Observations") == [4]


def test_delete_feature_of_interest_cascades_to_observations(client: TestClient) -> None:
    full_setup(client)
    foi = get(client, "Observations(4)/FeatureOfInterest")["@iot.id"]
    delete(client, f"FeaturesOfInterest({foi})")
    assert ids(client, "Observations") == [1, 2, 3]
    assert ids(client, "Datastreams") == [1, 2]


def test_delete_location_removes_orphan_historical_locations(client: TestClient) -> None:
    setup_thing(client)
    second = post(client, "Locations", f.location("second", OTHER_POINT))["@iot.id"]
    patch(client, "Things(1)", {"Locations": [{"@iot.id": 1}, {"@iot.id": second}]})
    assert hl_locations(client) == [[1], [1, second]]
    delete(client, "Locations(1)")
    assert hl_locations(client) == [[second]]
    assert ids(client, "Things") == [1]
    assert ids(client, "Things(1)/Locations") == [second]


# -- atomicity --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"Sensor": {"@iot.id": 99}, "ObservedProperty": f.observed_property()},
        {"Sensor": f.sensor(), "ObservedProperty": {"name": "no definition", "description": "x"}},
        {"Sensor": f.sensor()},
    ],
    ids=["missing-link", "invalid-nested", "missing-relation"],
)
def test_failing_deep_insert_creates_nothing(client: TestClient, bad: dict[str, Any]) -> None:
    """Every request is one transaction: a deep insert failing in a nested part leaves no trace."""
    setup_thing(client)
    before = counts(client)
    body = f.thing(
        "doomed",
        Locations=[f.location("doomed")],
        Datastreams=[
            f.datastream(
                "ok", Sensor=f.sensor("ok"), ObservedProperty=f.observed_property("ok"), Observations=[{"result": 1}]
            ),
            f.datastream("bad", **bad),
        ],
    )
    post(client, "Things", body, 400)
    assert counts(client) == before


def test_failing_deep_observation_creates_nothing(client: TestClient) -> None:
    setup_thing(client)
    before = counts(client)
    body = f.thing(
        "no location",
        Datastreams=[
            f.datastream(Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1}, Observations=[{"result": 1}])
        ],
    )
    # No FeatureOfInterest and no Location to derive one from.
    post(client, "Things", body, 400)
    assert counts(client) == before


def test_failing_patch_with_new_locations_changes_nothing(client: TestClient) -> None:
    setup_thing(client)
    before = counts(client)
    patch(client, "Things(1)", {"name": "renamed", "Locations": [f.location("new"), {"@iot.id": 99}]}, 400)
    assert counts(client) == before
    assert ids(client, "Things(1)/Locations") == [1]
    assert get(client, "Things(1)")["name"] == "Well Roombeek 12"


# -- $ref: link and unlink --------------------------------------------------------------------------------------------


def test_ref_post_adds_a_link(client: TestClient) -> None:
    setup_thing(client)
    loc = post(client, "Locations", f.location("second", OTHER_POINT))["@iot.id"]
    r = client.post(url("Things(1)/Locations/$ref"), json={"@iot.id": loc})
    assert r.status_code in (200, 201, 204)
    assert ids(client, "Things(1)/Locations") == [1, loc]


def test_ref_post_links_location_and_records_history(client: TestClient) -> None:
    setup_thing(client)
    loc = post(client, "Locations", f.location("second", OTHER_POINT))["@iot.id"]
    r = client.post(url("Things(1)/Locations/$ref"), json={"@iot.selfLink": f"{BASE}/Locations({loc})"})
    assert r.status_code in (200, 201, 204)
    assert loc in ids(client, "Things(1)/Locations")
    assert loc in hl_locations(client)[-1]


def test_ref_post_to_missing_target_is_400(client: TestClient) -> None:
    setup_thing(client)
    r = client.post(url("Things(1)/Locations/$ref"), json={"@iot.id": 77})
    assert r.status_code == 400
    assert ids(client, "Things(1)/Locations") == [1]


def test_ref_put_sets_single_link(client: TestClient) -> None:
    setup_thing(client)
    sensor = post(client, "Sensors", f.sensor("other"))["@iot.id"]
    r = client.put(url("Datastreams(1)/Sensor/$ref"), json={"@iot.id": sensor})
    assert r.status_code in (200, 204)
    assert get(client, "Datastreams(1)/Sensor/$ref") == {"@iot.selfLink": f"{BASE}/Sensors({sensor})"}
    assert ids(client, "Sensors(1)/Datastreams") == []


def test_ref_delete_removes_link_only(client: TestClient) -> None:
    setup_thing(client)
    second = post(client, "Locations", f.location("second", OTHER_POINT))["@iot.id"]
    patch(client, "Things(1)", {"Locations": [{"@iot.id": 1}, {"@iot.id": second}]})
    r = client.delete(url(f"Things(1)/Locations({second})/$ref"))
    assert r.status_code in (200, 204)
    assert ids(client, "Things(1)/Locations") == [1]
    assert get(client, f"Locations({second})")["name"] == "second"


def test_ref_delete_of_missing_link_is_404(client: TestClient) -> None:
    setup_thing(client)
    second = post(client, "Locations", f.location("second", OTHER_POINT))["@iot.id"]
    assert client.delete(url(f"Things(1)/Locations({second})/$ref")).status_code == 404


@pytest.mark.parametrize(
    "path", ["Datastreams(1)/Thing/$ref", "Things(1)/Datastreams(1)/$ref", "Datastreams(1)/Sensor/$ref"]
)
def test_ref_delete_of_mandatory_link_is_409(client: TestClient, path: str) -> None:
    setup_thing(client)
    assert client.delete(url(path)).status_code == 409
    assert get(client, "Datastreams(1)/Thing")["@iot.id"] == 1
    assert get(client, "Datastreams(1)/Sensor")["@iot.id"] == 1
