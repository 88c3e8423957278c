"""The ingestion sink (``Service.ingest``): one transaction per message, redelivery harmless, dead letters.

Every connector (LoRaWAN, MQTT topics, files) ends here, so these guarantees hold for all of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from stadsdata.ingest.base import READINGS_PATH, DecodeError, Delivery, Message, Reading, decode_message, encode_message
from stadsdata.model.values import to_micros
from stadsdata.service import Service
from tests import fixtures

V = "/v1.1"
T0 = to_micros(dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC))
MINUTE = 60_000_000
R = TypeVar("R")


@pytest.fixture
def city(client: TestClient) -> TestClient:
    assert client.post(f"{V}/Things", json=fixtures.full_thing()).status_code == 201  # Datastream 1
    return client


def _run(client: TestClient, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
    assert client.portal is not None
    return client.portal.call(lambda: fn(*args, **kwargs))


def _service(client: TestClient) -> Service:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    return service


def _ingest(client: TestClient, message: Message) -> Delivery:
    return _run(client, _service(client).ingest, message)


def _observations(client: TestClient) -> list[dict[str, Any]]:
    r = client.get(f"{V}/Datastreams(1)/Observations", params={"$orderby": "phenomenonTime", "$top": "1000"})
    assert r.status_code == 200, r.text
    values: list[dict[str, Any]] = r.json()["value"]
    return values


def _message(key: str | None, *readings: Reading, source: str = "test") -> Message:
    return Message(source, key, readings, path="file")


def test_readings_are_stored_with_times_and_parameters(city: TestClient) -> None:
    gateways = {"f_cnt": 17, "gateways": [{"id": "gw-1", "rssi": -97, "snr": 7.5}]}
    delivery = _ingest(
        city,
        _message(
            "dev-1:17",
            Reading(1, T0, 1.25, result_time=T0 + 5_000_000, parameters=gateways),
            Reading(1, T0 + MINUTE, {"level": 1.5}),
        ),
    )
    assert not delivery.duplicate and not delivery.rejected and len(delivery.created) == 2
    rows = _observations(city)
    assert [r["@iot.id"] for r in rows] == delivery.created
    assert [r["result"] for r in rows] == [1.25, {"level": 1.5}]
    assert rows[0]["phenomenonTime"] == "2026-11-22T10:00:00Z"
    assert rows[0]["resultTime"] == "2026-11-22T10:00:05Z"
    assert rows[0]["parameters"] == gateways
    assert rows[1]["resultTime"] is None
    # The Datastream's phenomenonTime follows, as for any create.
    ds = city.get(f"{V}/Datastreams(1)").json()
    assert ds["phenomenonTime"] == "2026-11-22T10:00:00Z/2026-11-22T10:01:00Z"
    # A FeatureOfInterest was derived from the Thing's Location, as for an HTTP create.
    assert city.get(f"{V}/Observations({delivery.created[0]})/FeatureOfInterest").status_code == 200


def test_a_redelivered_message_creates_nothing(city: TestClient) -> None:
    message = _message("dev-1:18", Reading(1, T0, 1.0), Reading(1, T0 + MINUTE, 2.0))
    first = _ingest(city, message)
    again = _ingest(city, message)
    assert len(first.created) == 2 and again == Delivery(duplicate=True)
    assert len(_observations(city)) == 2
    # Keys are per source, and a message without a key is never taken for a redelivery.
    assert len(_ingest(city, _message("dev-1:18", Reading(1, T0, 3.0), source="other")).created) == 1
    assert len(_ingest(city, _message(None, Reading(1, T0, 4.0))).created) == 1
    assert len(_ingest(city, _message(None, Reading(1, T0, 4.0))).created) == 1
    assert len(_observations(city)) == 5


def test_refused_readings_are_dead_lettered_and_the_others_stored(city: TestClient) -> None:
    message = _message(
        "dev-1:19",
        Reading(1, T0, 1.0),
        Reading(99, T0, 2.0),  # no such Datastream
        Reading(1, T0 + MINUTE, float("nan")),
        Reading(1, 10**18, 3.0),  # beyond the year 9999
        Reading(1, T0 + 2 * MINUTE, 4.0, feature_of_interest_id=42),  # no such FeatureOfInterest
    )
    delivery = _ingest(city, message)
    assert len(delivery.created) == 1 and len(delivery.rejected) == 4
    assert "no Datastream with @iot.id 99" in delivery.rejected[0]
    assert "nan" in delivery.rejected[1]
    assert "years 1 to 9999" in delivery.rejected[2]
    assert "FeatureOfInterest with @iot.id 42" in delivery.rejected[3]
    [letter] = _run(city, _service(city).dead_letters)
    assert letter.source == "test" and letter.path == READINGS_PATH
    assert "reading 1:" in letter.reason and "reading 4:" in letter.reason
    kept = decode_message(letter.payload)
    assert [r.datastream_id for r in kept.readings] == [99, 1, 1, 1]
    # Redelivery of the whole message: the stored reading is not stored again, nothing more is dead-lettered.
    assert _ingest(city, message).duplicate
    assert len(_observations(city)) == 1
    assert len(_run(city, _service(city).dead_letters)) == 1
    metrics = city.get("/metrics").text
    assert 'stadsdata_observations_ingested_total{path="file"} 1.0' in metrics
    assert 'stadsdata_observations_rejected_total{path="file"} 4.0' in metrics


def test_replay_stores_what_decodes_now_and_only_once(city: TestClient) -> None:
    service = _service(city)
    topic = "v3/city@ttn/devices/dev-7/up"
    reason = "device dev-7 is not in the mapping"
    letter_id = _run(city, service.dead_letter, "ttn", "lorawan", reason, b'{"v": 2.5}', topic)
    [letter] = _run(city, service.dead_letters, "ttn")
    assert letter.id == letter_id and letter.payload == b'{"v": 2.5}' and letter.reason.startswith("device dev-7")
    assert letter.topic == topic
    with pytest.raises(DecodeError, match="no connector decodes source 'ttn'"):
        _run(city, service.replay, letter, {})
    assert _run(city, service.dead_letters)  # still there

    def decode(payload: bytes, on: str | None) -> Message:
        assert on == topic  # the decoder gets the topic the payload came on
        return _message("dev-7:1", Reading(1, T0, 2.5), source="ttn")

    delivery = _run(city, service.replay, letter, {"ttn": decode})
    assert len(delivery.created) == 1
    assert _run(city, service.dead_letters) == []
    assert _run(city, service.replay, letter, {"ttn": decode}).duplicate  # replayed twice: stored once
    assert [r["result"] for r in _observations(city)] == [2.5]


def test_replayed_readings_that_fail_again_move_to_a_new_letter(city: TestClient) -> None:
    service = _service(city)
    _ingest(city, _message("k", Reading(1, T0, 1.0), Reading(77, T0, 2.0)))
    [letter] = _run(city, service.dead_letters)
    again = _run(city, service.replay, letter, {})
    assert again.created == [] and len(again.rejected) == 1
    [moved] = _run(city, service.dead_letters)
    assert moved.id != letter.id and decode_message(moved.payload).readings == decode_message(letter.payload).readings


def test_encoded_messages_round_trip() -> None:
    message = Message("s", "k", (Reading(3, T0, [1, {"a": None}], T0, {"x": 1}, 5),), "mqtt")
    assert decode_message(encode_message(message)) == message
    with pytest.raises(DecodeError, match="not a readings message"):
        decode_message(b'{"readings": [{}]}')
