"""Receive updates: every committed create and update, through any path, reaches the topics that ask for it.

Runs on the embedded broker (which sees subscriptions: set, entity, property, related-set and
$select topics) and on mosquitto (which does not: the default topics of every change), on every store.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from stadsdata.ingest.base import Message, Reading
from stadsdata.model.values import to_micros
from stadsdata.mqtt import Mqtt
from stadsdata.service import Service
from tests import fixtures as f
from tests.mqtt.conftest import Device, published

V = "/v1.1"


def _setup(client: TestClient) -> None:
    r = client.post(f"{V}/Things", json=f.full_thing())  # Thing 1, Location 1, Datastream 1
    assert r.status_code == 201
    _idle(client)  # its notifications are out before a test subscribes


def _bodies(received: list[tuple[str, Any]], topic: str) -> list[Any]:
    return [doc for t, doc in received if t == topic]


def _idle(client: TestClient) -> None:
    published(client)


def test_updates_on_every_write_path(mqtt_client: tuple[TestClient, int], devices: list[Device]) -> None:
    client, port = mqtt_client
    _setup(client)
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe("v1.1/Observations", "v1.1/Datastreams(1)/Observations", "v1.1/Things(1)")

    # HTTP POST
    assert client.post(f"{V}/Datastreams(1)/Observations", json={"result": 1.5}).status_code == 201
    # $batch change set (published only once the change set committed)
    batch = {
        "requests": [
            {"id": "a", "atomicityGroup": "g", "method": "post", "url": "Observations",
             "body": {"result": 2.5, "Datastream": {"@iot.id": 1}}},
        ]
    }  # fmt: skip
    assert client.post(f"{V}/$batch", json=batch).status_code == 200
    # CreateObservations (the bulk path)
    dataarray = [{"Datastream": {"@iot.id": 1}, "components": ["result"], "dataArray": [[3.5], [4.5]]}]
    assert client.post(f"{V}/CreateObservations", json=dataarray).status_code == 201
    # ingestion (the sink every connector uses)
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    message = Message("test", "k1", (Reading(1, to_micros(dt.datetime(2026, 11, 1, tzinfo=dt.UTC)), 5.5),), "mqtt")
    assert client.portal is not None
    client.portal.call(service.ingest, message)
    # PATCH
    assert client.patch(f"{V}/Things(1)", json={"name": "Well 12"}).status_code == 200
    _idle(client)

    received = sub.wait(11)  # five Observations on two topics, and the Thing
    results = [doc["result"] for doc in _bodies(received, "v1.1/Observations")]
    assert sorted(results) == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert sorted(doc["result"] for doc in _bodies(received, "v1.1/Datastreams(1)/Observations")) == results
    thing = _bodies(received, "v1.1/Things(1)")
    assert [t["name"] for t in thing] == ["Well 12"]
    # The entity exactly as GET shows it.
    base = "http://127.0.0.1:8080/v1.1"  # no base_url set: the server's own address
    for doc in _bodies(received, "v1.1/Observations"):
        shown = json.loads(json.dumps(doc).replace(base, "http://testserver/v1.1"))
        assert shown == client.get(f"{V}/Observations({doc['@iot.id']})").json()
    assert thing[0]["@iot.selfLink"] == f"{base}/Things(1)"


def test_a_rolled_back_change_set_publishes_nothing(mqtt_client: tuple[TestClient, int], devices: list[Device]) -> None:
    client, port = mqtt_client
    _setup(client)
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe("v1.1/Observations")
    batch = {
        "requests": [
            {"id": "a", "atomicityGroup": "g", "method": "post", "url": "Observations",
             "body": {"result": 1, "Datastream": {"@iot.id": 1}}},
            {"id": "b", "atomicityGroup": "g", "method": "post", "url": "Observations",
             "body": {"result": 2, "Datastream": {"@iot.id": 99}}},
        ]
    }  # fmt: skip
    client.post(f"{V}/$batch", json=batch)
    assert client.get(f"{V}/Observations").json()["value"] == []
    _idle(client)
    assert sub.quiet() == []


@pytest.mark.parametrize("broker_kind", ["embedded"], indirect=True)
def test_topics_the_embedded_broker_publishes(mqtt_client: tuple[TestClient, int], devices: list[Device]) -> None:
    client, port = mqtt_client
    _setup(client)
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe(
        "v1.1/Things(1)/name",
        "v1.1/Things(1)/description",
        "v1.1/Observations?$select=result,phenomenonTime",
        "v1.1/Things(1)/Datastreams",
        "v1.1/Things(1)/Locations",
        "v1.1/Sensors(1)/Datastreams",
    )
    assert client.patch(f"{V}/Things(1)", json={"name": "Well 12"}).status_code == 200
    assert client.post(f"{V}/Observations", json={"result": 7, "Datastream": {"@iot.id": 1}}).status_code == 201
    assert client.patch(f"{V}/Datastreams(1)", json={"description": "in m"}).status_code == 200
    assert client.patch(f"{V}/Locations(1)", json={"name": "Roombeek"}).status_code == 200
    _idle(client)
    received = sub.wait(5)
    assert _bodies(received, "v1.1/Things(1)/name") == [{"name": "Well 12"}]
    assert _bodies(received, "v1.1/Things(1)/description") == []  # not changed: not published
    selected = _bodies(received, "v1.1/Observations?$select=result,phenomenonTime")
    assert len(selected) == 1 and set(selected[0]) == {"result", "phenomenonTime"} and selected[0]["result"] == 7
    assert [d["description"] for d in _bodies(received, "v1.1/Things(1)/Datastreams")] == ["in m"]
    assert [d["@iot.id"] for d in _bodies(received, "v1.1/Sensors(1)/Datastreams")] == [1]
    assert [d["name"] for d in _bodies(received, "v1.1/Things(1)/Locations")] == ["Roombeek"]  # through a link table
    assert len(sub.quiet()) == 5


@pytest.mark.parametrize("broker_kind", ["embedded"], indirect=True)
def test_nothing_is_queued_while_nobody_subscribes(mqtt_client: tuple[TestClient, int], devices: list[Device]) -> None:
    client, port = mqtt_client
    _setup(client)
    mqtt: Mqtt = client.app.state.mqtt  # type: ignore[attr-defined]
    assert not mqtt.publisher.interest.topics and not mqtt.publisher.interest.defaults
    assert client.post(f"{V}/Observations", json={"result": 7, "Datastream": {"@iot.id": 1}}).status_code == 201
    _idle(client)
    assert mqtt.publisher.published == 0
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe("v1.1/Things(1)")
    assert set(mqtt.publisher.interest.topics) == {client.app.state.service.registry.sets["Things"]}  # type: ignore[attr-defined]
    sub.close()
    devices.remove(sub)
    deadline = 50
    while mqtt.publisher.interest.topics and deadline:
        time.sleep(0.05)
        deadline -= 1
    assert not mqtt.publisher.interest.topics  # the subscription went with its session


@pytest.mark.parametrize("broker_kind", ["embedded"], indirect=True)
def test_a_wildcard_subscription_gets_the_default_topics(
    mqtt_client: tuple[TestClient, int], devices: list[Device]
) -> None:
    client, port = mqtt_client
    _setup(client)
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe("v1.1/#")
    assert client.post(f"{V}/Observations", json={"result": 7, "Datastream": {"@iot.id": 1}}).status_code == 201
    _idle(client)
    topics = {t for t, _ in sub.wait(6)}
    assert topics == {
        "v1.1/Observations",
        "v1.1/Observations(1)",
        "v1.1/Datastreams(1)/Observations",
        "v1.1/FeaturesOfInterest(1)/Observations",
        # the FeatureOfInterest the server derived for it from the Thing's Location
        "v1.1/FeaturesOfInterest",
        "v1.1/FeaturesOfInterest(1)",
    }


@pytest.mark.parametrize("broker_kind", ["embedded"], indirect=True)
def test_readiness_names_the_broker(mqtt_client: tuple[TestClient, int]) -> None:
    client, _ = mqtt_client
    assert client.get("/health/ready").json() == {"status": "ready", "store": "ok", "mqtt": "ok"}


@pytest.mark.parametrize("broker_kind", ["mosquitto"], indirect=True)
def test_readiness_fails_while_the_external_broker_is_away(
    mqtt_client: tuple[TestClient, int], request: pytest.FixtureRequest
) -> None:
    client, _ = mqtt_client
    assert client.get("/health/ready").status_code == 200
    mosquitto = request.getfixturevalue("mosquitto")
    mosquitto.stop()
    r = client.get("/health/ready")
    for _ in range(50):
        if r.status_code == 503:
            break
        time.sleep(0.1)
        r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["mqtt"].startswith("the MQTT broker is not connected")
    mosquitto.start()
    for _ in range(100):
        if client.get("/health/ready").status_code == 200:
            break
        time.sleep(0.1)
    assert client.get("/health/ready").json() == {"status": "ready", "store": "ok", "mqtt": "ok"}


def test_entities_the_server_creates_are_published(mqtt_client: tuple[TestClient, int], devices: list[Device]) -> None:
    """The FeatureOfInterest derived from a Thing's Location and the HistoricalLocation of a new Location are
    created by the server, and notified like any other."""
    client, port = mqtt_client
    sub = Device(port, "watcher")
    devices.append(sub)
    sub.subscribe("v1.1/FeaturesOfInterest", "v1.1/HistoricalLocations")
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201  # a Location: a HistoricalLocation
    assert client.post(f"{V}/Datastreams(1)/Observations", json={"result": 1}).status_code == 201  # derives a feature
    _idle(client)
    received = sub.wait(2)
    assert [d["@iot.id"] for d in _bodies(received, "v1.1/HistoricalLocations")] == [1]
    assert [d["@iot.id"] for d in _bodies(received, "v1.1/FeaturesOfInterest")] == [1]
