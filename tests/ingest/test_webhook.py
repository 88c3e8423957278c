"""POST /ingest/ttn and /ingest/chirpstack: the secret, acknowledgement after commit, redelivery, dead letters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.ingest.connectors import decoders
from stadsdata.service import Service
from stadsdata.settings import Settings
from tests import fixtures
from tests.ingest.test_lorawan import sample

V = "/v1.1"
SECRET = "s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}
MAPPING = """
[[device]]
dev_eui = "0025CA00000017C2"          # Ezurio RS26x on The Things Network
[device.fields]
Temperature = 1

[[device]]
dev_eui = "70b3d57ba0003bb8"          # Decentlab DL-PR26 on ChirpStack
network = "chirpstack"
fields = { "battery_voltage.value" = 1 }
"""


@pytest.fixture
def hooks(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "ingest.toml"
    path.write_text(MAPPING, encoding="utf-8")
    configured = dataclasses.replace(settings, webhook_secret=SECRET, ingest_mapping=str(path))
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        assert client.post(f"{V}/Things", json=fixtures.full_thing()).status_code == 201  # Datastream 1
        client.app.state.mapping_path = path  # type: ignore[attr-defined]
        yield client


def observations(client: TestClient) -> list[dict[str, Any]]:
    r = client.get(f"{V}/Datastreams(1)/Observations", params={"$orderby": "phenomenonTime"})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["value"]
    return rows


def service(client: TestClient) -> Service:
    found: Service = client.app.state.service  # type: ignore[attr-defined]
    return found


def test_a_ttn_uplink_is_stored_once_however_often_it_comes(hooks: TestClient) -> None:
    body = sample("tts_ezurio_rs26x_uplink.json")
    r = hooks.post("/ingest/ttn", content=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 1, "duplicate": False, "key": "rs261-erik-internal:25:2025-11-07T08:52:14.536109379Z"}
    [obs] = observations(hooks)  # 200 came after the commit: the reading is there
    assert obs["result"] == 21.83 and obs["phenomenonTime"] == "2025-11-07T08:52:14.536109Z"
    assert obs["parameters"]["rssi"] == -69 and obs["parameters"]["gateways"][0]["id"] == "eriks-rg186"
    again = hooks.post("/ingest/ttn", content=body, headers=AUTH)  # the network server retries
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["stored"] == 0
    assert len(observations(hooks)) == 1
    metrics = hooks.get("/metrics").text
    assert 'stadsdata_observations_ingested_total{path="lorawan"} 1.0' in metrics


def test_chirpstack_uplinks_and_other_events(hooks: TestClient) -> None:
    body = sample("chirpstack_decentlab_dl_pr26_up_with_object.synthetic.json")
    r = hooks.post("/ingest/chirpstack?event=up", content=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    assert hooks.post("/ingest/chirpstack?event=up", content=body, headers=AUTH).json()["duplicate"] is True
    r = hooks.post("/ingest/chirpstack?event=status", content=sample("chirpstack_docs_status.json"), headers=AUTH)
    assert r.status_code == 200 and r.json()["stored"] == 0 and "status event" in r.json()["ignored"]
    r = hooks.post("/ingest/ttn", content=sample("tts_docs_join_accept.json"), headers=AUTH)
    assert r.status_code == 200 and r.json()["stored"] == 0 and "ignored" in r.json()
    assert [o["result"] for o in observations(hooks)] == [3.199]
    assert _letters(hooks) == []


def test_the_secret_is_required(hooks: TestClient) -> None:
    body = sample("tts_ezurio_rs26x_uplink.json")
    r = hooks.post("/ingest/ttn", content=body)
    assert r.status_code == 401 and "no Authorization header" in r.json()["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = hooks.post("/ingest/chirpstack", content=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "a wrong secret" in r.json()["message"]
    r = hooks.post("/ingest/ttn", content=body, headers={"Authorization": f"Basic {SECRET}"})
    assert r.status_code == 401
    assert observations(hooks) == [] and _letters(hooks) == []  # nothing taken, nothing kept
    r = hooks.get("/ingest/ttn", headers=AUTH)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_without_a_secret_the_webhooks_are_off(settings: Settings) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.post("/ingest/ttn", content=sample("tts_ezurio_rs26x_uplink.json"), headers=AUTH)
        assert r.status_code == 503 and "webhooks are off: set webhook_secret" in r.json()["message"]


def _letters(client: TestClient) -> list[Any]:
    assert client.portal is not None
    return client.portal.call(service(client).dead_letters)


def test_bad_bodies_are_dead_lettered_and_replayed_once_the_mapping_is_fixed(hooks: TestClient) -> None:
    r = hooks.post("/ingest/ttn", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and r.json()["code"] == "dead-lettered"
    assert "not JSON" in r.json()["message"] and f"kept as dead letter {r.json()['deadLetter']}" in r.json()["message"]

    unknown = sample("tts_docs_uplink.json")  # device dev1 is not in the mapping
    r = hooks.post("/ingest/ttn", content=unknown, headers=AUTH)
    assert r.status_code == 422
    message = r.json()["message"]
    assert "device_id 'dev1'" in message and "is not in ingest mapping" in message
    letter_id = r.json()["deadLetter"]
    assert f"kept as dead letter {letter_id}" in message and f"stadsdata dead-letters replay {letter_id}" in message
    assert observations(hooks) == []
    # A redelivery of the same bad payload is kept again (nothing was committed for it), still nothing stored.
    assert hooks.post("/ingest/ttn", content=unknown, headers=AUTH).status_code == 422
    letters = _letters(hooks)
    assert [x.source for x in letters] == ["ttn", "ttn", "ttn"] and letters[1].payload == unknown
    assert 'stadsdata_observations_rejected_total{path="lorawan"} 3.0' in hooks.get("/metrics").text

    # The operator adds the device to the mapping and replays: stored once, however often replayed.
    path: Path = hooks.app.state.mapping_path  # type: ignore[attr-defined]
    path.write_text(MAPPING + '\n[[device]]\ndevice_id = "dev1"\nfields = { temperature = 1 }\n', encoding="utf-8")
    fixed = decoders(hooks.app.state.settings)  # type: ignore[attr-defined]
    assert hooks.portal is not None
    delivery = hooks.portal.call(service(hooks).replay, letters[1], fixed)
    assert len(delivery.created) == 1
    assert hooks.portal.call(service(hooks).replay, letters[1], fixed).duplicate
    assert [o["result"] for o in observations(hooks)] == [1.0]
    assert [x.id for x in _letters(hooks)] == [letters[0].id, letters[2].id]


def test_two_dead_letters_of_one_uplink_replay_to_one_observation(hooks: TestClient) -> None:
    unknown = sample("tts_docs_uplink.json")
    for _ in range(2):
        assert hooks.post("/ingest/ttn", content=unknown, headers=AUTH).status_code == 422
    path: Path = hooks.app.state.mapping_path  # type: ignore[attr-defined]
    path.write_text(MAPPING + '\n[[device]]\ndevice_id = "dev1"\nfields = { temperature = 1 }\n', encoding="utf-8")
    fixed = decoders(hooks.app.state.settings)  # type: ignore[attr-defined]
    assert hooks.portal is not None
    for letter in _letters(hooks):
        hooks.portal.call(service(hooks).replay, letter, fixed)
    assert [o["result"] for o in observations(hooks)] == [1.0]  # a retried uplink: stored once
    assert _letters(hooks) == []  # both letters done with


def test_a_reading_the_store_refuses_is_dead_lettered_and_the_uplink_acknowledged(hooks: TestClient) -> None:
    doc = orjson.loads(sample("tts_ezurio_rs26x_uplink.json"))
    doc["uplink_message"]["decoded_payload"]["Temperature"] = {"nested": [1, {"deep": None}]}
    r = hooks.post("/ingest/ttn", content=orjson.dumps(doc), headers=AUTH)
    assert r.status_code == 200 and r.json()["stored"] == 1  # any JSON value is a result
    assert hooks.delete(f"{V}/Datastreams(1)").status_code == 200
    doc["uplink_message"]["f_cnt"] = 26
    doc["uplink_message"]["received_at"] = "2025-11-07T09:52:14.536109379Z"
    r = hooks.post("/ingest/ttn", content=orjson.dumps(doc), headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 0 and "no Datastream with @iot.id 1" in r.json()["rejected"][0]
    [letter] = _letters(hooks)
    assert letter.path == "readings"


def test_no_acknowledgement_without_a_commit(hooks: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    body = sample("tts_ezurio_rs26x_uplink.json")
    real = service(hooks).store.write
    calls = []

    async def failing_write(unit: Any) -> Any:
        calls.append(unit)
        raise OSError("disk full")  # the database fails before the commit

    monkeypatch.setattr(service(hooks).store, "write", failing_write)
    r = hooks.post("/ingest/ttn", content=body, headers=AUTH)
    assert r.status_code == 500 and calls  # not 2xx: the network server sends it again
    monkeypatch.setattr(service(hooks).store, "write", real)
    r = hooks.post("/ingest/ttn", content=body, headers=AUTH)  # the retry
    assert r.status_code == 200 and r.json()["stored"] == 1
    assert [o["result"] for o in observations(hooks)] == [21.83]
