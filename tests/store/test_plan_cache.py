"""Compiled read plans are shared by requests that differ only in the first id of their path."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from stadsdata.model.entities import sensing_registry
from stadsdata.model.values import to_micros
from stadsdata.store import functions
from stadsdata.store.postgres import PostgresStore
from tests import fixtures as f
from tests.conftest import POSTGRES


def _city(client: TestClient, n: int) -> None:
    for k in range(n):
        body = f.datastream(
            f"ds{k}",
            Thing=f.thing(f"t{k}", Locations=[f.location()]),
            Sensor=f.sensor(),
            ObservedProperty=f.observed_property(),
        )
        assert client.post("/v1.1/Datastreams", json=body).status_code == 201
        for i in range(k + 2):
            r = client.post(f"/v1.1/Datastreams({k + 1})/Observations", json={"result": k * 10 + i})
            assert r.status_code == 201


def test_same_shape_other_ids(client: TestClient) -> None:
    _city(client, 3)
    for k in (1, 2, 3, 2, 1):  # each shape is compiled once and reused with other ids, in any order
        assert client.get(f"/v1.1/Things({k})").json()["name"] == f"t{k - 1}"
        results = client.get(f"/v1.1/Datastreams({k})/Observations?$orderby=result").json()["value"]
        assert [o["result"] for o in results] == [(k - 1) * 10 + i for i in range(k + 1)]
        counted = client.get(f"/v1.1/Datastreams({k})/Observations?$count=true&$filter=result gt 10").json()
        assert counted["@iot.count"] == len([i for i in range(k + 1) if (k - 1) * 10 + i > 10])
        nested = client.get(f"/v1.1/Things({k})/Datastreams({k})/Observations?$top=1&$orderby=result").json()
        assert nested["value"][0]["result"] == (k - 1) * 10
        expanded = client.get(f"/v1.1/Things({k})?$expand=Datastreams/Observations($filter=result ge 11)").json()
        got = [o["result"] for o in expanded["Datastreams"][0]["Observations"]]
        assert sorted(got) == [(k - 1) * 10 + i for i in range(k + 1) if (k - 1) * 10 + i >= 11]
    assert client.get("/v1.1/Things(2)/Datastreams(1)/Observations").status_code == 404
    assert client.get("/v1.1/Things(9)").status_code == 404


def test_now_is_the_time_of_each_request(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled plan is shared, but now() is evaluated per request, not frozen at the first one."""
    _city(client, 1)
    client.post("/v1.1/Datastreams(1)/Observations", json={"result": 99, "phenomenonTime": "2030-01-01T00:00:00Z"})
    url = "/v1.1/Datastreams(1)/Observations?$filter=phenomenonTime lt now()&$count=true&$top=0"
    assert client.get(url).json()["@iot.count"] == 2
    later = to_micros(dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    monkeypatch.setattr(functions, "now_micros", lambda: later)
    assert client.get(url).json()["@iot.count"] == 3


@pytest.mark.skipif(POSTGRES is None, reason="STADSDATA_TEST_POSTGRES is not set (scripts/test.sh sets it)")
def test_postgres_plans_each_read_for_its_values_but_not_the_writes(postgres_database: str) -> None:
    """Readers plan each execution for its own parameters (a generic plan of a Datastream's Observations by id walks
    the whole primary key); the writer does not, since there PostgreSQL would also plan the foreign key checks of
    every row again (twice the time of a bulk insert)."""
    store = PostgresStore(postgres_database, sensing_registry())

    def mode(tx: Any) -> str:
        return str(tx.conn.execute("SHOW plan_cache_mode").fetchone()[0])

    async def both() -> tuple[str, str]:
        try:
            return await store.run_read(mode), await store.write(mode)
        finally:
            await store.close()

    assert asyncio.run(both()) == ("force_custom_plan", "auto")
