"""The bulk path picks narrow column sets per request; every mix of value shapes must read back exactly."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import fixtures as f

V = "/v1.1"
T = "2026-11-22T10:00:00Z"
T2 = "2026-11-22T11:00:00Z"

CASES: dict[str, tuple[list[str], list[list[Any]]]] = {
    "floats": (["phenomenonTime", "result"], [[T, 1.5], [T2, -0.25]]),
    "floats and ints": (["phenomenonTime", "result"], [[T, 1.5], [T2, 3]]),
    "every kind of result": (
        ["phenomenonTime", "result"],
        [[T, 1.5], [T, 2], [T, "dry"], [T, True], [T, None], [T, {"level": 1}], [T, [1, 2]], [T, 2**60]],
    ),
    "instants and intervals": (["phenomenonTime", "result"], [[T, 1.0], [f"{T}/{T2}", 2.0]]),
    "only intervals": (["phenomenonTime", "result"], [[f"{T}/{T2}", 1.0]]),
    "some result times": (["result", "phenomenonTime", "resultTime"], [[1.0, T, None], [2.0, T, T2]]),
    "all fields": (
        ["phenomenonTime", "result", "resultTime", "resultQuality", "validTime", "parameters"],
        [[T, 1.0, T2, "good", f"{T}/{T2}", {"depth": 2}], [T2, 2.0, None, None, None, None]],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_created_observations_read_back_exactly(client: TestClient, case: str) -> None:
    components, rows = CASES[case]
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    r = client.post(
        f"{V}/CreateObservations",
        json=[{"Datastream": {"@iot.id": 1}, "components": components, "dataArray": rows}],
    )
    assert r.status_code == 201, r.text
    links = r.json()
    assert len(links) == len(rows) and all(isinstance(link, str) and "Observations(" in link for link in links)
    got = client.get(f"{V}/Observations?$orderby=id&$top=100").json()["value"]
    assert len(got) == len(rows)
    for obs, row in zip(got, rows, strict=True):
        for name, value in zip(components, row, strict=True):
            assert obs[name] == value, (name, obs)
