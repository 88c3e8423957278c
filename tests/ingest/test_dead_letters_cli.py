"""`stadsdata dead-letters list|show|replay|delete`, against the database a running server uses."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from stadsdata.cli import main
from stadsdata.ingest.base import Message, Reading
from stadsdata.settings import Settings
from tests import fixtures
from tests.ingest.test_sink import T0, _ingest, _observations, _run, _service

V = "/v1.1"
TOPIC = "v3/city@ttn/devices/well-7/up"


@pytest.fixture
def letters(client: TestClient) -> TestClient:
    """Letter 1: a reading for Datastream 1, which does not exist yet; letter 2: a payload no connector decodes."""
    delivery = _ingest(client, Message("file:abc", "chunk:0", (Reading(1, T0, 4.25),), path="file"))
    assert delivery.rejected and not delivery.created
    payload = b'{"end_device_ids": {"device_id": "well-7"}}'
    _run(client, _service(client).dead_letter, "ttn", "lorawan", "device well-7 is not in the mapping", payload, TOPIC)
    return client


def _cli(capsys: pytest.CaptureFixture[str], settings: Settings, *args: str) -> tuple[int, str, str]:
    status = main(["dead-letters", *args, "--db", settings.db])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_list_and_show(letters: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _cli(capsys, settings, "list")
    assert status == 0 and "2 dead letter(s)" in err
    first, second = out.splitlines()
    assert first.startswith("1\t") and "file:abc" in first and "no Datastream with @iot.id 1" in first
    assert second.startswith("2\t") and "\tttn\t" in second and "well-7 is not in the mapping" in second
    status, out, _ = _cli(capsys, settings, "list", "--source", "ttn")
    assert status == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["2"]

    status, out, _ = _cli(capsys, settings, "show", "2")
    assert status == 0
    assert f"topic: {TOPIC}" in out and "reason: device well-7 is not in the mapping" in out
    assert out.rstrip().endswith('{"end_device_ids": {"device_id": "well-7"}}')

    status, _, err = _cli(capsys, settings, "show", "99")
    assert status == 1 and "no such dead letter: 99" in err


def test_replay_after_the_cause_is_fixed(
    letters: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _cli(capsys, settings, "replay", "1")
    assert status == 1 and "refused again" in out  # Datastream 1 still missing: kept, as a new letter
    status, out, _ = _cli(capsys, settings, "list")
    assert [line.split("\t")[0] for line in out.splitlines()] == ["2", "3"]

    assert letters.post(f"{V}/Things", json=fixtures.full_thing()).status_code == 201  # creates Datastream 1
    status, out, _ = _cli(capsys, settings, "replay")
    assert status == 1  # letter 2 has no connector in this configuration
    assert "3: 1 observation(s) stored" in out
    assert "2: still not decoded, kept: no connector decodes source 'ttn'" in out
    assert [o["result"] for o in _observations(letters)] == [4.25]

    status, _, err = _cli(capsys, settings, "replay", "3")  # replayed: gone, never stored twice
    assert status == 1 and "no such dead letter: 3" in err
    assert [o["result"] for o in _observations(letters)] == [4.25]


def test_delete(letters: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _cli(capsys, settings, "delete", "2", "5")
    assert status == 1 and "2: deleted" in out and "no such dead letter: 5" in err
    status, out, _ = _cli(capsys, settings, "list")
    assert [line.split("\t")[0] for line in out.splitlines()] == ["1"]


def test_an_action_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["dead-letters"])
    assert stop.value.code == 2 and "ACTION" in capsys.readouterr().err
