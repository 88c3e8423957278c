"""Disclosure control: an aggregate over personal Datastreams is shown to others only with at least k owners."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from stadsdata.access.identity import ALL_PROJECTS, Role
from stadsdata.access.tokens import issue
from stadsdata.api.app import create_app
from stadsdata.settings import Settings

# Neighbourhood A has five homes, B three; each home's level is its number, twice.
HOMES = {"A": [1.0, 2.0, 3.0, 4.0, 5.0], "B": [10.0, 20.0, 30.0]}


@pytest.fixture
def city(world_settings: Callable[[str], Settings]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = dataclasses.replace(world_settings("disclosure"), min_owners=5)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        store = client.app.state.store  # type: ignore[attr-defined]

        def token(subject: str, grants: tuple[tuple[str, Role, bool], ...] = ()) -> str:
            return str(client.portal.call(store.write, lambda tx: issue(tx, subject, grants)))  # type: ignore[union-attr]

        tokens = {
            "admin": token("admin", ((ALL_PROJECTS, Role.ADMIN, True),)),
            "owner-A0": token("owner-A0"),
            "staff": token("staff", (("groundwater", Role.READER, True),)),
        }
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        for buurt, levels in HOMES.items():
            for i, level in enumerate(levels):
                owner = f"owner-{buurt}{i}"
                marks = {"visibility": "personal", "owner": owner}
                body = {
                    "name": f"home {buurt}{i}",
                    "description": "a home",
                    "properties": {"project": "groundwater", "buurt": buurt, **marks},
                    "Locations": [
                        {
                            "name": "l",
                            "description": "d",
                            "encodingType": "application/geo+json",
                            "location": {"type": "Point", "coordinates": [6.9, 52.2]},
                        }
                    ],  # fmt: skip
                    "Datastreams": [
                        {
                            "name": f"level {buurt}{i}",
                            "description": "d",
                            "observationType": "m",
                            "unitOfMeasurement": {"name": "m", "symbol": "m", "definition": "m"},
                            "properties": marks,
                            "Sensor": {
                                "name": "probe",
                                "description": "d",
                                "encodingType": "text/plain",
                                "metadata": "m",
                            },
                            "ObservedProperty": {"name": "level", "definition": "level", "description": "d"},
                            "Observations": [
                                {"phenomenonTime": f"2026-11-0{d}T00:00:00Z", "result": level} for d in (1, 2)
                            ],
                        }
                    ],  # fmt: skip
                }
                assert client.post("/v1.1/Things", json=body, headers=admin).status_code == 201
        yield client, tokens


def _mean(client: TestClient, token: str | None, buurt: str) -> list[dict[str, Any]]:
    apply = f"filter(Datastream/Thing/properties/buurt eq '{buurt}')/aggregate(result with average as mean,$count as n)"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.get(f"/v1.1/Observations?$apply={quote(apply)}", headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_aggregates_need_five_owners(city: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = city
    # Anonymous: nothing of the homes is visible, but the mean of five owners' homes is released ...
    assert _mean(client, None, "A") == [{"mean": 3.0, "n": 10}]
    # ... and that of three is not.
    assert _mean(client, None, "B") == []
    # The rows themselves stay hidden.
    assert client.get("/v1.1/Observations").json()["value"] == []
    # Per Datastream every group has one owner: none is released.
    per_stream = client.get(
        "/v1.1/Observations?$apply=" + quote("groupby((Datastream/@iot.id),aggregate($count as n))")
    )
    assert per_stream.json()["value"] == []
    # An owner counts among the five: the same groups as anonymous.
    assert _mean(client, tokens["owner-A0"], "A") == [{"mean": 3.0, "n": 10}]
    assert _mean(client, tokens["owner-A0"], "B") == []
    # Staff with the personal right see every row, so every aggregate.
    assert _mean(client, tokens["staff"], "B") == [{"mean": 20.0, "n": 6}]
    # Under a path the reader must see every step: a home's Datastream is not found.
    assert client.get("/v1.1/Datastreams(1)/Observations?$apply=aggregate($count as n)").status_code == 404
