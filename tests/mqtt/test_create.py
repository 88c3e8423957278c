"""Create via MQTT: an Observation published to a SensorThings topic is created, acknowledged after its commit,
never twice for a redelivery; what cannot be created is a dead letter, and the next message goes on."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.mqtt import Mqtt
from stadsdata.service import Service
from stadsdata.settings import Settings
from tests import fixtures as f
from tests.mqtt.conftest import Device, RawClient, free_port, published

V = "/v1.1"


def _setup(client: TestClient) -> None:
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201  # Datastream 1, Location 1
    assert client.post(f"{V}/Datastreams(1)/Observations", json={"result": 0}).status_code == 201  # FoI 1
    published(client)  # their notifications are out before a test subscribes


def _results(client: TestClient) -> list[object]:
    return [o["result"] for o in client.get(f"{V}/Observations?$orderby=id&$select=result&$top=1000").json()["value"]]


def _wait_for(client: TestClient, count: int, timeout: float = 10.0) -> list[object]:
    deadline = time.monotonic() + timeout
    while True:
        found = _results(client)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _dead_letters(client: TestClient) -> list[tuple[str, str, str | None]]:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    assert client.portal is not None
    letters = client.portal.call(service.dead_letters)
    return [(x.source, x.reason, x.topic) for x in letters]


def test_create_on_each_topic(mqtt_client: tuple[TestClient, int], devices: list[Device], broker_kind: str) -> None:
    client, port = mqtt_client
    _setup(client)
    device = Device(port, "well-12")
    devices.append(device)
    device.publish("v1.1/Observations", {"result": 1, "Datastream": {"@iot.id": 1}})
    device.publish("v1.1/Datastreams(1)/Observations", {"result": 2, "phenomenonTime": "2026-11-01T10:00:00Z"})
    device.publish("v1.1/FeaturesOfInterest(1)/Observations", {"result": 3, "Datastream": {"@iot.id": 1}})
    if broker_kind == "embedded":
        # Acknowledged only once committed: visible to the very next read.
        assert _results(client) == [0, 1, 2, 3]
    assert _wait_for(client, 4) == [0, 1, 2, 3]
    obs = client.get(f"{V}/Observations(4)?$expand=FeatureOfInterest($select=id),Datastream($select=id)").json()
    assert obs["FeatureOfInterest"]["@iot.id"] == 1 and obs["Datastream"]["@iot.id"] == 1
    assert client.get(f"{V}/Observations(3)").json()["phenomenonTime"] == "2026-11-01T10:00:00Z"
    metrics = client.get("/metrics").text
    assert 'stadsdata_observations_ingested_total{path="mqtt"} 3.0' in metrics


def test_malformed_payloads_are_dead_letters_and_the_next_message_goes_on(
    mqtt_client: tuple[TestClient, int], devices: list[Device], broker_kind: str
) -> None:
    client, port = mqtt_client
    _setup(client)
    device = Device(port, "well-12")
    devices.append(device)
    device.publish("v1.1/Datastreams(1)/Observations", b"{not json")
    device.publish("v1.1/Datastreams(1)/Observations", {"result": 1, "phenomenonTime": "yesterday"})
    device.publish("v1.1/Datastreams(99)/Observations", {"result": 1})
    device.publish("v1.1/Things", {"name": "x", "description": "y"})
    device.publish("v1.1/Datastreams(1)/Observations", {"result": 5})
    assert _wait_for(client, 2) == [0, 5]
    # On mosquitto the server subscribes to the Observation topics only: v1.1/Things never reaches it.
    expected = 4 if broker_kind == "embedded" else 3
    deadline = time.monotonic() + 10
    while len(letters := _dead_letters(client)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(source, topic) for source, _, topic in letters] == [
        ("sta-mqtt", "v1.1/Datastreams(1)/Observations"),
        ("sta-mqtt", "v1.1/Datastreams(1)/Observations"),
        ("sta-mqtt", "v1.1/Datastreams(99)/Observations"),
        ("sta-mqtt", "v1.1/Things"),
    ][:expected]
    reasons = [reason for _, reason, _ in letters]
    assert reasons[0].startswith("the payload is not JSON")
    assert "phenomenonTime" in reasons[1]
    assert "Datastream" in reasons[2] and "99" in reasons[2]
    if broker_kind == "embedded":
        assert reasons[3].startswith("Observations are created by publishing to v1.1/Observations")
    assert f'stadsdata_observations_rejected_total{{path="mqtt"}} {expected}.0' in client.get("/metrics").text


@pytest.mark.parametrize("broker_kind", ["embedded"], indirect=True)
def test_a_redelivery_creates_nothing_and_a_first_delivery_always_creates(
    mqtt_client: tuple[TestClient, int],
) -> None:
    client, port = mqtt_client
    _setup(client)
    raw = RawClient(port, "well-12")
    payload = json.dumps({"result": 7, "phenomenonTime": "2026-11-01T10:00:00Z"}).encode()
    topic = "v1.1/Datastreams(1)/Observations"
    raw.publish(topic, payload, packet_id=7)
    raw.publish(topic, payload, packet_id=7, dup=True)  # our PUBACK was lost: sent again
    assert _results(client) == [0, 7]
    raw.publish(topic, payload, packet_id=8, dup=True)  # a redelivery whose first delivery never arrived
    assert _results(client) == [0, 7, 7]
    raw.publish(topic, payload, packet_id=7)  # the id reused for a new message (DUP=0): a new Observation
    assert _results(client) == [0, 7, 7, 7]
    raw.close()
    # The claim belongs to the session (client id), not to the connection.
    again = RawClient(port, "well-12")
    again.publish(topic, payload, packet_id=8, dup=True)
    assert _results(client) == [0, 7, 7, 7]
    other = RawClient(port, "well-13")
    other.publish(topic, payload, packet_id=8, dup=True)
    assert _results(client) == [0, 7, 7, 7, 7]
    again.close()
    other.close()


@pytest.mark.parametrize("broker_kind", ["mosquitto"], indirect=True)
def test_the_server_does_not_take_its_own_notifications_for_creates(
    mqtt_client: tuple[TestClient, int], devices: list[Device]
) -> None:
    """Creates and notifications share topic names; the No Local subscription option keeps them apart."""
    client, port = mqtt_client
    _setup(client)
    watcher = Device(port, "watcher")
    devices.append(watcher)
    watcher.subscribe("v1.1/Datastreams(1)/Observations")
    assert client.post(f"{V}/Datastreams(1)/Observations", json={"result": 1}).status_code == 201
    device = Device(port, "well-12")
    devices.append(device)
    device.publish("v1.1/Datastreams(1)/Observations", {"result": 2})
    received = watcher.wait(3)  # the notification of 1, the publish of 2 as it is, the notification of 2
    assert sorted(d["result"] for _, d in received) == [1, 2, 2]
    time.sleep(0.5)
    assert _results(client) == [0, 1, 2]
    assert _dead_letters(client) == []


MAPPING = """
[[topic]]
name = "meetnet"
pattern = "meetnet/{station}/lucht"
payload = "json"
time = "$.ts"
[topic.fields]
"$.pm10" = { by = "station", datastreams = { NL10636 = 1 } }
"""


def test_ingestion_subscriptions(
    mqtt_settings: tuple[Settings, int], devices: list[Device], tmp_path: Path, broker_kind: str
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    settings, port = mqtt_settings
    settings = dataclasses.replace(settings, ingest_mapping=str(mapping))
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        _setup(client)
        watcher = Device(port, "watcher")
        devices.append(watcher)
        watcher.subscribe("meetnet/#")
        station = Device(port, "station")
        devices.append(station)
        reading = {"ts": "2026-11-01T10:00:00Z", "pm10": 12.5}
        station.publish("meetnet/NL10636/lucht", reading)
        station.publish("meetnet/NL10636/lucht", reading)  # the same measurement again: stored once
        station.publish("meetnet/NL10636/lucht", b"\xff not json")
        station.publish("meetnet/NL10636/lucht", {"ts": "2026-11-01T10:10:00Z", "pm10": 13.0})
        assert _wait_for(client, 3) == [0, 12.5, 13.0]
        deadline = time.monotonic() + 10
        while not (letters := _dead_letters(client)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(source, topic) for source, _, topic in letters] == [("mqtt:meetnet", "meetnet/NL10636/lucht")]
        # Messages on ingestion topics still reach the broker's other subscribers.
        assert len(watcher.wait(4)) == 4
        mqtt: Mqtt = client.app.state.mqtt  # type: ignore[attr-defined]
        assert mqtt.intake.duplicates == 1


def test_the_embedded_broker_port_taken_is_reported_not_fatal(settings: Settings) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        app = create_app(dataclasses.replace(settings, mqtt_port=port))
        with TestClient(app, base_url="http://testserver") as client:
            r = client.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["mqtt"].startswith(f"the embedded MQTT broker cannot listen on 127.0.0.1:{port}")
            assert client.get(f"{V}/Things").status_code == 200
    assert free_port()
