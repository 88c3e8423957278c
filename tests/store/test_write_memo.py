"""A write batch remembers lookups its units repeat (``SqlSession.memo``); a change within the batch must be seen.

A ``$batch`` atomicity group runs its requests in one transaction, as group commit runs
concurrent requests: the second Observation below must get the FeatureOfInterest of the
Location the Thing has by then, not the one remembered for the first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from stadsdata.model.entities import DATASTREAM, sensing_registry
from stadsdata.query.path import parse_path
from stadsdata.service import Service
from stadsdata.store.sqlite import SQLiteStore
from tests import fixtures as f
from tests.api.test_batch import batch, req, setup_thing

V = "/v1.1"


def _features(client: TestClient) -> list[str]:
    r = client.get(f"{V}/Observations", params={"$orderby": "result", "$expand": "FeatureOfInterest($select=name)"})
    assert r.status_code == 200, r.text
    return [o["FeatureOfInterest"]["name"] for o in r.json()["value"]]


def test_a_thing_moved_within_the_transaction_gives_the_next_observation_its_new_feature(client: TestClient) -> None:
    setup_thing(client)
    moved = f.location("Roombeek 14", {"type": "Point", "coordinates": [6.8951, 52.2222]})
    responses = batch(
        client,
        req("a", "POST", "Datastreams(1)/Observations", {"result": 1}, atomicityGroup="g"),
        req("move", "PATCH", "Things(1)", {"Locations": [moved]}, atomicityGroup="g", dependsOn=["a"]),
        req("b", "POST", "Datastreams(1)/Observations", {"result": 2}, atomicityGroup="g", dependsOn=["move"]),
        req("c", "POST", "Datastreams(1)/Observations", {"result": 3}, atomicityGroup="g", dependsOn=["b"]),
    )
    assert [x["status"] for x in responses] == [201, 200, 201, 201], responses
    assert _features(client) == ["Roombeek 12", "Roombeek 14", "Roombeek 14"]


def test_a_feature_made_in_a_rolled_back_group_is_not_reused(client: TestClient) -> None:
    """The group's first request makes the Location's FeatureOfInterest, its second fails: the group is undone,
    and the next request must make the feature again instead of pointing at one that no longer exists."""
    setup_thing(client)
    responses = batch(
        client,
        req("a", "POST", "Datastreams(1)/Observations", {"result": 1}, atomicityGroup="g"),
        req("bad", "POST", "Datastreams(99)/Observations", {"result": 2}, atomicityGroup="g", dependsOn=["a"]),
        req("ok", "POST", "Datastreams(1)/Observations", {"result": 3}),
    )
    assert [x["status"] for x in responses][1:] == [404, 201], responses
    assert _features(client) == ["Roombeek 12"]
    r = client.get(f"{V}/FeaturesOfInterest", params={"$select": "id"})
    assert len(r.json()["value"]) == 1


def test_a_reader_does_not_remember_rows_from_one_read_to_the_next(tmp_path: Path) -> None:
    """Reads on a reader connection see each new snapshot: what an earlier read looked up (that a Datastream is
    not there, its name) is not taken for true later, after a write changed it."""
    registry = sensing_registry()
    store = SQLiteStore(tmp_path / "memo.db", registry, synchronous="NORMAL", readers=1)
    service = Service(registry, store)

    async def run() -> list[Any]:
        def look(tx: Any) -> tuple[bool, Any]:
            found = tx.get(DATASTREAM, 1)
            return tx.exists(DATASTREAM, 1), found.values["name"] if found else None

        seen = [await store.run_read(look)]
        body = f.datastream(Thing=f.thing(), Sensor=f.sensor(), ObservedProperty=f.observed_property())
        await service.create(parse_path(registry, "Datastreams"), body)
        seen.append(await store.run_read(look))
        await service.update(parse_path(registry, "Datastreams(1)"), {"name": "renamed"}, "patch")
        seen.append(await store.run_read(look))
        await store.close()
        return seen

    seen = asyncio.run(run())
    assert seen == [(False, None), (True, f.datastream()["name"]), (True, "renamed")]
