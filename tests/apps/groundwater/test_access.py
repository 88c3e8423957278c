"""The groundwater app on a platform with access control on: a resident sees their own well and nothing of a
neighbour's through any path; the city's neighbourhood figures come out of the platform only with five homes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from stadsdata.access.identity import Role
from stadsdata.access.tokens import issue
from stadsdata.api.app import create_app
from stadsdata.apps.groundwater.platform import Platform
from stadsdata.apps.groundwater.registry import parse, store
from stadsdata.settings import Settings

SETS = ("Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "ObservedProperties", "Observations",
        "FeaturesOfInterest")  # fmt: skip
# Five homes in one neighbourhood, one in another.
HOMES = [("BU01530310", i) for i in range(5)] + [("BU01530420", 5)]


def _homes_doc() -> dict[str, Any]:
    return {
        "home": [
            {
                "id": f"home-{i}",
                "owner": f"resident-{i}",
                "buurtcode": buurt,
                "floor_nap": 38.5,
                "crawlspace_floor_nap": 37.8,
                "location": [6.89 + i / 1000, 52.22],
                "sensor": {"kind": "level", "model": "Keller DCX-22", "device_id": f"dcx-{i}", "field": "level"},
                "calibration": [{"valid_from": datetime(2026, 1, 1, tzinfo=UTC), "well_top_nap": 37.9}],
            }
            for buurt, i in HOMES
        ]
    }


@pytest.fixture
def city(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str], list[Any]]]:
    with TestClient(create_app(dataclasses.replace(settings, access="on")), base_url="http://testserver") as client:
        store_ = client.app.state.store  # type: ignore[attr-defined]

        def token(subject: str, grants: tuple[tuple[str, Role, bool], ...] = ()) -> str:
            return str(client.portal.call(store_.write, lambda tx: issue(tx, subject, grants)))  # type: ignore[union-attr]

        tokens = {"service": token("gw-service", (("groundwater", Role.WRITER, True),)),
                  "staff": token("gw-staff", (("groundwater", Role.READER, False),))}  # fmt: skip
        tokens |= {f"resident-{i}": token(f"resident-{i}") for _, i in HOMES}

        def send(method: str, path: str, body: Any) -> Any:
            headers = {"Authorization": f"Bearer {tokens['service']}"}
            r = client.request(method, f"/v1.1/{path}", json=body, headers=headers)
            assert r.status_code < 400, r.text
            return r.json() if r.content else {}

        platform = Platform(send)
        stored = [store(platform, home) for home in parse(_homes_doc()).homes]
        for s in stored:
            level = s.datastreams["level"]
            for day, value in ((1, 37.2), (2, 37.3)):
                body = {"phenomenonTime": f"2026-11-0{day}T00:00:00Z", "result": value + s.home.location[0] - 6.89}
                send("POST", f"Datastreams({level})/Observations", body)
        yield client, tokens, stored


def _all(client: TestClient, token: str | None, path: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.get(f"/v1.1/{path}", headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_a_resident_sees_their_own_well_only(city: tuple[TestClient, dict[str, str], list[Any]]) -> None:
    client, tokens, stored = city
    mine, neighbour = stored[0], stored[1]
    me = tokens["resident-0"]
    things = _all(client, me, "Things?$expand=Datastreams($expand=Observations),Locations")
    assert [t["@iot.id"] for t in things] == [mine.thing]
    assert {d["@iot.id"] for d in things[0]["Datastreams"]} == set(mine.datastreams.values())
    # Through the Sensor and ObservedProperty the homes share, only my Datastreams.
    for path in ("Sensors?$expand=Datastreams", "ObservedProperties?$expand=Datastreams"):
        for shared in _all(client, me, path):
            assert {d["@iot.id"] for d in shared["Datastreams"]} <= set(mine.datastreams.values()), path
    # Every entity set: nothing of a neighbour's.
    mine_ids = set(mine.datastreams.values())
    for ds in _all(client, me, "Datastreams?$top=1000"):
        assert ds["@iot.id"] in mine_ids
    for obs in _all(client, me, "Observations?$top=1000&$expand=Datastream($select=id)"):
        assert obs["Datastream"]["@iot.id"] in mine_ids
    # The neighbour's well, addressed directly, through navigation, filters and $ref, is not found.
    headers = {"Authorization": f"Bearer {me}"}
    level = neighbour.datastreams["level"]
    for path in (f"Things({neighbour.thing})", f"Datastreams({level})", f"Datastreams({level})/Observations",
                 f"Things({neighbour.thing})/Locations", f"Datastreams({level})/Thing/$ref"):  # fmt: skip
        assert client.get(f"/v1.1/{path}", headers=headers).status_code == 404, path
    flt = quote("properties/owner eq 'resident-1'")
    assert _all(client, me, f"Things?$filter={flt}") == []
    assert (
        _all(
            client,
            me,
            f"Sensors?$filter={quote('Datastreams/Thing/properties/owner eq ' + chr(39) + 'resident-1' + chr(39))}",
        )
        == []
    )
    # Staff without the personal right see no home; anonymous callers neither.
    for token in (tokens["staff"], None):
        for name in SETS:
            assert _all(client, token, f"{name}?$top=1000") == [], name


def test_neighbourhood_figures_need_five_homes(city: tuple[TestClient, dict[str, str], list[Any]]) -> None:
    client, tokens, _ = city

    def mean(buurt: str, token: str | None) -> list[dict[str, Any]]:
        apply = (f"filter(Datastream/Thing/properties/buurtcode eq '{buurt}' and Datastream/properties/role eq "
                 "'level')/aggregate(result with average as mean,$count as n)")  # fmt: skip
        return _all(client, token, f"Observations?$apply={quote(apply)}")

    five = mean("BU01530310", None)
    assert five[0]["n"] == 10 and five[0]["mean"] == pytest.approx(37.252)
    assert mean("BU01530420", None) == []  # one home: not released
    assert mean("BU01530420", tokens["staff"]) == []  # a reader without the personal right neither
    assert mean("BU01530420", tokens["resident-5"])[0]["n"] == 2  # the resident's own home: all theirs
