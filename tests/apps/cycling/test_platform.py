"""Intersections and evaluation results stored through the public HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from stadsdata.apps.cycling.evaluate import Evaluation, Variant
from stadsdata.apps.cycling.platform import Platform, Transport
from stadsdata.apps.cycling.topology import Intersection


def transport(client: TestClient) -> Transport:
    def send(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        r = client.request(method, f"/v1.1/{path}", json=body)
        assert r.status_code < 400, r.text
        return dict(r.json()) if r.content else {}

    return send


def test_intersection_is_a_thing_with_location_and_datastreams(client: TestClient, intersection: Intersection) -> None:
    platform = Platform(transport(client))
    thing = platform.store_intersection(intersection)
    doc = client.get(f"/v1.1/Things({thing})?$expand=Locations,Datastreams").json()
    assert doc["properties"]["topology"]["id"] == intersection.id
    assert doc["Locations"][0]["location"]["coordinates"] == list(intersection.position)
    kinds = sorted((d["properties"]["kind"], d["properties"].get("signal_group")) for d in doc["Datastreams"])
    assert kinds == [("cyclist positions", None), ("priority requests", "22"), ("priority requests", "28")]
    # Loading again updates the same Thing and adds no Datastream.
    assert platform.store_intersection(intersection) == thing
    assert len(client.get("/v1.1/Things").json()["value"]) == 1
    assert len(client.get("/v1.1/Datastreams").json()["value"]) == 3


def test_loading_adds_missing_datastreams(client: TestClient, intersection: Intersection) -> None:
    """An intersection stored before positions had a Datastream gets one when loaded again."""
    platform = Platform(transport(client))
    thing = platform.store_intersection(intersection)
    positions = client.get(f"/v1.1/Things({thing})/Datastreams?$filter=properties/kind eq 'cyclist positions'")
    (stream,) = positions.json()["value"]
    assert client.delete(f"/v1.1/Datastreams({stream['@iot.id']})").status_code < 300
    assert platform.store_intersection(intersection) == thing
    names = [d["name"] for d in client.get(f"/v1.1/Things({thing})/Datastreams").json()["value"]]
    assert sorted(names)[0] == "Hengelosestraat x Alleeweg, Enschede: cyclist positions" and len(names) == 3


def test_evaluation_results_are_observations(client: TestClient) -> None:
    rows = {
        Variant(0.0, 20.0): [{"cyclist_delay": 16.0, "cyclists_stopped": 70.0, "car_delay": 10.0}] * 2,
        Variant(1.0, 20.0): [
            {"cyclist_delay": 11.0, "cyclists_stopped": 35.0, "car_delay": 20.0},
            {"cyclist_delay": 13.0, "cyclists_stopped": 37.0, "car_delay": 24.0},
        ],
    }
    evaluation = Evaluation("Test junction", 1.0, [1, 2], rows)
    platform = Platform(transport(client))
    assert platform.store_evaluation(evaluation, (6.87, 52.23), datetime(2026, 11, 23, tzinfo=UTC)) == 6
    assert platform.store_evaluation(evaluation, (6.87, 52.23), datetime(2026, 11, 24, tzinfo=UTC)) == 6
    streams = client.get("/v1.1/Datastreams?$expand=Observations($orderby=phenomenonTime)&$top=100").json()["value"]
    assert len(streams) == 6
    car = next(d for d in streams if d["name"] == "car delay, 100 % app, window 20 s")
    assert [o["result"] for o in car["Observations"]] == [22.0, 22.0]
    assert car["Observations"][0]["parameters"]["seeds"] == 2
    assert car["Observations"][0]["parameters"]["ci95_low"] < 22.0 < car["Observations"][0]["parameters"]["ci95_high"]
    assert car["unitOfMeasurement"]["symbol"] == "s"
    assert len(client.get("/v1.1/Sensors").json()["value"]) == 1
