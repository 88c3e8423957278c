"""Observation counts per Datastream and MultiDatastream (``store/counts.py``): exact after every kind of write,
and what ``$count`` of an unfiltered set of Observations answers from."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.access.erase import erase_owner
from stadsdata.ingest.base import Message, Reading
from stadsdata.model.entities import OBSERVATION
from stadsdata.service import Service
from stadsdata.settings import Settings
from stadsdata.store import is_postgres
from tests import fixtures as f

V = "/v1.1"
COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"


def sql(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    if is_postgres(settings.db):
        with psycopg.connect(settings.db, autocommit=True) as conn:
            cur = conn.execute(query)
            return list(cur.fetchall()) if cur.description else []
    with sqlite3.connect(settings.db) as conn:
        return list(conn.execute(query).fetchall())


def _post(client: TestClient, path: str, body: Any) -> int:
    r = client.post(f"{V}/{path}", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["@iot.id"])


def _count(client: TestClient, path: str, **params: str) -> int:
    r = client.get(f"{V}/{path}", params={"$count": "true", "$top": "0", **params})
    assert r.status_code == 200, r.text
    return int(r.json()["@iot.count"])


HOUR = 3_600_000_000
START = "phenomenon_time_start"
NUMBER = "CASE WHEN result_type IN (1, 2) THEN result_number END"
SUMMARIES = (
    f"SELECT datastream_id, {START} - (({START} % {HOUR}) + {HOUR}) % {HOUR} AS h, count(*), "
    f"count(phenomenon_time_end), count({NUMBER}), sum({NUMBER}), min({NUMBER}), max({NUMBER}) "
    "FROM observations WHERE datastream_id IS NOT NULL GROUP BY datastream_id, h"
)


def check_hours(settings: Settings) -> None:
    """The kept hourly summaries are those of the Observations (sums within rounding)."""
    exact = {(r[0], r[1]): r[2:] for r in sql(settings, SUMMARIES)}
    kept = {(r[0], r[1]): r[2:] for r in sql(settings, "SELECT datastream_id, hour, count, intervals, numbers, sum, "
                                                       "min, max FROM observation_hours")}  # fmt: skip
    assert kept.keys() == exact.keys()
    for key, want in exact.items():
        got = kept[key]
        assert got[:3] == want[:3] and got[4:] == want[4:], key
        assert (got[3] is None) == (want[3] is None) and (want[3] is None or got[3] == pytest.approx(want[3])), key


def check(client: TestClient, settings: Settings) -> None:
    """The kept counts are the Observations' own, and every unfiltered ``$count`` equals ``count(*)``; the hourly
    summaries are the Observations' too."""
    check_hours(settings)
    for column in ("datastream_id", "multi_datastream_id"):
        exact = dict(
            sql(settings, f"SELECT {column}, count(*) FROM observations WHERE {column} IS NOT NULL GROUP BY {column}")
        )
        kept = dict(sql(settings, f"SELECT {column}, count FROM observation_counts WHERE {column} IS NOT NULL"))
        assert {k: v for k, v in kept.items() if v} == exact, column
        entity_set = "Datastreams" if column == "datastream_id" else "MultiDatastreams"
        for (parent,) in sql(settings, f"SELECT id FROM {entity_set.lower().replace('multi', 'multi_')}"):
            assert _count(client, f"{entity_set}({parent})/Observations") == exact.get(parent, 0)
    total = sql(settings, "SELECT count(*) FROM observations")[0][0]
    assert _count(client, "Observations") == total
    assert sum(r["@iot.count"] for r in _expanded_counts(client)) == total


def _expanded_counts(client: TestClient) -> list[dict[str, Any]]:
    out = []
    for entity_set in ("Datastreams", "MultiDatastreams"):
        r = client.get(f"{V}/{entity_set}", params={"$expand": "Observations($count=true;$top=0)", "$top": "1000"})
        assert r.status_code == 200, r.text
        out += [{"@iot.count": e["Observations@iot.count"]} for e in r.json()["value"]]
    return out


def _observation(t: int, result: Any = 1.5, **links: Any) -> dict[str, Any]:
    return {"phenomenonTime": f"2026-11-{1 + t // 24:02d}T{t % 24:02d}:00:00Z", "result": result, **links}


def _multi(thing: int, name: str = "multi") -> dict[str, Any]:
    return {
        "name": name,
        "description": "d",
        "observationType": COMPLEX,
        "multiObservationDataTypes": [f.MEASUREMENT, f.MEASUREMENT],
        "unitOfMeasurements": [f.UNIT_M, f.UNIT_M],
        "Thing": {"@iot.id": thing},
        "Sensor": {"@iot.id": 1},
        "ObservedProperties": [f.observed_property("a"), f.observed_property("b")],
    }


@pytest.fixture
def city(client: TestClient, settings: Settings) -> TestClient:
    """Thing 1 (with a Location), Datastreams 1 and 2, MultiDatastream 1, FeatureOfInterest 1; some Observations."""
    _post(client, "Things", f.full_thing())
    _post(client, "Datastreams", f.datastream("second", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1},
                                              ObservedProperty={"@iot.id": 1}))  # fmt: skip
    _post(client, "MultiDatastreams", _multi(1))
    _post(client, "FeaturesOfInterest", {"name": "f", "description": "d", "encodingType": "application/geo+json",
                                         "feature": f.POINT})  # fmt: skip
    for t in range(3):
        _post(client, "Datastreams(1)/Observations", _observation(t))
        _post(client, "Observations", _observation(t, 2.5, Datastream={"@iot.id": 2}))
        _post(client, "MultiDatastreams(1)/Observations", _observation(t, [1, 2]))
    check(client, settings)
    return client


def _data_array(parent: str, parent_id: int, rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [{parent: {"@iot.id": parent_id}, "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
             "dataArray": rows}]  # fmt: skip


def _ids(client: TestClient, path: str) -> list[int]:
    r = client.get(f"{V}/{path}", params={"$top": "1000", "$select": "id"})
    assert r.status_code == 200, r.text
    return [e["@iot.id"] for e in r.json()["value"]]


def test_deep_insert(city: TestClient, settings: Settings) -> None:
    body = f.thing("deep", Locations=[f.location("deep")], Datastreams=[
        f.datastream("deep", Sensor=f.sensor(), ObservedProperty=f.observed_property(),
                     Observations=[_observation(t) for t in range(4)])])  # fmt: skip
    _post(city, "Things", body)
    check(city, settings)


def test_create_observations(city: TestClient, settings: Settings) -> None:
    rows = [[f"2026-11-05T{h:02d}:00:00Z", h, 1] for h in range(10)]
    bad = [["2026-11-06T00:00:00Z", 1, 99]]  # no such FeatureOfInterest: that row is refused, the others kept
    body = (
        _data_array("Datastream", 1, rows)
        + _data_array("Datastream", 2, rows[:3] + bad)
        + _data_array("MultiDatastream", 1, [[r[0], [1, 2], 1] for r in rows[:4]] + [[rows[5][0], [1], 1]])
    )
    r = city.post(f"{V}/CreateObservations", json=body)
    assert r.status_code == 201, r.text
    assert sum(isinstance(x, str) and x.startswith("error") for x in r.json()) == 2
    check(city, settings)
    derived = [{"Datastream": {"@iot.id": 2}, "components": ["phenomenonTime", "result"],
                "dataArray": [["2026-11-07T00:00:00Z", 1], ["2026-11-07T01:00:00Z", 2]]}]  # fmt: skip
    assert city.post(f"{V}/CreateObservations", json=derived).status_code == 201
    check(city, settings)


def test_delete_observations(city: TestClient, settings: Settings) -> None:
    for path in ("Datastreams(1)/Observations", "MultiDatastreams(1)/Observations"):
        for obs in _ids(city, path)[:2]:
            assert city.delete(f"{V}/Observations({obs})").status_code == 200
            check(city, settings)
    assert city.delete(f"{V}/Observations(999)").status_code == 404
    check(city, settings)


def test_moving_observations(city: TestClient, settings: Settings) -> None:
    first, second = _ids(city, "Datastreams(1)/Observations")[:2]
    assert city.patch(f"{V}/Observations({first})", json={"Datastream": {"@iot.id": 2}}).status_code == 200
    check(city, settings)
    body = _observation(30, 4.5, Datastream={"@iot.id": 2}, FeatureOfInterest={"@iot.id": 1})
    assert city.put(f"{V}/Observations({second})", json=body).status_code == 200
    check(city, settings)
    # Back through the Datastream's side of the relation, and by reference.
    assert city.patch(f"{V}/Datastreams(1)", json={"Observations": [{"@iot.id": first}]}).status_code == 200
    check(city, settings)
    r = city.put(f"{V}/Observations({second})/Datastream/$ref", json={"@iot.id": 1})
    assert r.status_code in (200, 204), r.text
    check(city, settings)
    # A move that breaks a rule is undone, counts and all.
    mds_obs = _ids(city, "MultiDatastreams(1)/Observations")[0]
    r = city.patch(f"{V}/Observations({mds_obs})", json={"Datastream": {"@iot.id": 1}})
    assert r.status_code == 400, r.text
    check(city, settings)


@pytest.mark.parametrize("path", ["Datastreams(1)", "MultiDatastreams(1)", "Things(1)", "Sensors(1)",
                                  "ObservedProperties(1)", "FeaturesOfInterest(1)", "FeaturesOfInterest(2)",
                                  "Locations(1)"])  # fmt: skip
def test_deletes_that_cascade(city: TestClient, settings: Settings, path: str) -> None:
    # FeatureOfInterest 1 has this one; 2, derived from the Location, all the others.
    _post(city, "Datastreams(2)/Observations", _observation(40, FeatureOfInterest={"@iot.id": 1}))
    assert city.delete(f"{V}/{path}").status_code == 200
    check(city, settings)
    parents = sql(settings, "SELECT id FROM datastreams") + sql(settings, "SELECT id FROM multi_datastreams")
    assert sql(settings, "SELECT count(*) FROM observation_counts")[0][0] == len(parents)  # theirs went with them


def test_batch_change_sets(city: TestClient, settings: Settings) -> None:
    before = _count(city, "Observations")
    obs = _ids(city, "Datastreams(1)/Observations")[0]

    def req(rid: str, method: str, url: str, body: Any = None, group: str | None = "g") -> dict[str, Any]:
        out: dict[str, Any] = {"id": rid, "method": method, "url": url}
        if body is not None:
            out["body"] = body
        if group:
            out["atomicityGroup"] = group
        return out

    failing = [
        req("a", "POST", "Datastreams(1)/Observations", _observation(50)),
        req("b", "POST", "CreateObservations", _data_array("Datastream", 2, [["2026-11-20T00:00:00Z", 1, 1]])),
        req("c", "DELETE", f"Observations({obs})"),
        req("d", "POST", "Datastreams(1)/Observations", {"result": 1, "phenomenonTime": "not a time"}),
    ]
    r = city.post(f"{V}/$batch", json={"requests": failing})
    assert r.status_code == 200, r.text
    assert {x["status"] for x in r.json()["responses"]} == {400}
    assert _count(city, "Observations") == before
    check(city, settings)
    r = city.post(f"{V}/$batch", json={"requests": failing[:3]})
    assert [x["status"] for x in r.json()["responses"]] in ([201, 201, 200], [201, 200, 200])
    assert _count(city, "Observations") == before + 1
    check(city, settings)
    # Outside change sets each request stands alone, as the cycling app deletes old positions.
    ids = _ids(city, "Datastreams(2)/Observations")
    r = city.post(f"{V}/$batch", json={"requests": [req(str(i), "DELETE", f"Observations({i})", group=None)
                                                     for i in ids]})  # fmt: skip
    assert {x["status"] for x in r.json()["responses"]} == {200}
    check(city, settings)


def _service(client: TestClient) -> Service:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    return service


def test_ingest(city: TestClient, settings: Settings) -> None:
    t0 = 1_790_000_000_000_000
    readings = [Reading(1, t0 + i * 60_000_000, 1.0 + i) for i in range(5)] + [Reading(2, t0, 3.0)]
    unknown = Reading(77, t0, 1.0)  # no such Datastream: dead-lettered, not counted
    assert city.portal is not None
    delivery = city.portal.call(lambda: _service(city).ingest(Message("test", "k1", (*readings, unknown), path="file")))
    assert len(delivery.created) == 6
    check(city, settings)


def test_erase(client: TestClient, settings: Settings) -> None:
    personal = {"visibility": "personal", "owner": "resident-x"}
    thing = {**f.full_thing("home of x"), "properties": personal}
    thing["Datastreams"][0]["Observations"] = [_observation(t) for t in range(3)]
    _post(client, "Things", thing)
    _post(client, "Things", f.thing("public", Locations=[f.location("p")], Datastreams=[
        f.datastream("public", Sensor=f.sensor(), ObservedProperty=f.observed_property(),
                     Observations=[_observation(t) for t in range(2)])]))  # fmt: skip
    assert client.portal is not None
    client.portal.call(lambda: erase_owner(_service(client), "resident-x"))
    check(client, settings)
    assert _count(client, "Observations") == 2


def test_random_writes(city: TestClient, settings: Settings) -> None:
    rng = random.Random(7)
    parents = ["Datastreams(1)", "Datastreams(2)", "MultiDatastreams(1)"]
    for step in range(60):
        kind = rng.choice(["post", "post", "bulk", "delete", "move", "delete-datastream"])
        parent = rng.choice(parents)
        multi = parent.startswith("Multi")
        # Numbers and results without a number: an hour (or a whole batch) may have no sum, minimum or maximum.
        result: Any = [1, 2] if multi else rng.choice([rng.random(), rng.randrange(10), "dry", True])
        if kind == "post":
            _post(city, f"{parent}/Observations", _observation(rng.randrange(500), result))
        elif kind == "bulk":
            pid = int(parent.split("(")[1][:-1])
            rows = [[f"2026-12-01T00:{m:02d}:00Z", result, 1] for m in range(rng.randrange(1, 30))]
            body = _data_array("MultiDatastream" if multi else "Datastream", pid, rows)
            assert city.post(f"{V}/CreateObservations", json=body).status_code == 201
        elif kind == "delete":
            ids = _ids(city, f"{parent}/Observations")
            if ids:
                assert city.delete(f"{V}/Observations({rng.choice(ids)})").status_code == 200
        elif kind == "move" and not multi:
            ids = _ids(city, f"{parent}/Observations")
            target = rng.choice([p for p in parents if p.startswith("Datastreams(")])
            if ids:
                link = {"Datastream": {"@iot.id": int(target.split("(")[1][:-1])}}
                assert city.patch(f"{V}/Observations({rng.choice(ids)})", json=link).status_code == 200
        elif kind == "delete-datastream" and step % 20 == 19:
            assert city.delete(f"{V}/{parent}").status_code == 200
            parents.remove(parent)
            new = _post(city, "Datastreams", f.datastream(f"new {step}", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1},
                                                          ObservedProperty={"@iot.id": 1}))  # fmt: skip
            parents.append(f"Datastreams({new})")
        check(city, settings)


def test_unfiltered_counts_come_from_the_kept_counts(city: TestClient, settings: Settings) -> None:
    """Only a set without a filter is counted from the kept counts (seen here by changing one behind the store's
    back); anything filtered is counted row by row."""
    sql(settings, "UPDATE observation_counts SET count = count + 1000 WHERE datastream_id = 1")
    sql(settings, "UPDATE observation_counts SET count = count + 100 WHERE multi_datastream_id = 1")
    assert _count(city, "Datastreams(1)/Observations") == 1003
    assert _count(city, "MultiDatastreams(1)/Observations") == 103
    assert _count(city, "Things(1)/Datastreams(1)/Observations") == 1003
    assert _count(city, "Observations") == 1109
    assert _count(city, "Datastreams(1)/Observations", **{"$filter": "result ge 0"}) == 3
    assert _count(city, "Observations", **{"$filter": "result ge 0"}) == 6  # arrays are not numbers
    assert _count(city, "FeaturesOfInterest(2)/Observations") == 9
    assert _count(city, "Datastreams(1)/Observations", **{"$apply": "aggregate($count as n)"}) == 1
    doc = city.get(f"{V}/Datastreams(1)/Observations?$apply=aggregate($count as n)").json()
    assert doc["value"] == [{"n": 3}]


def test_a_missing_count_row_is_counted_from_the_rows(city: TestClient, settings: Settings) -> None:
    sql(settings, "DELETE FROM observation_counts WHERE datastream_id = 1")
    _post(city, "Datastreams(1)/Observations", _observation(60))
    check(city, settings)


def test_counting_writes_in_the_store(settings: Settings, client: TestClient) -> None:
    """The store keeps the counts for writes of any unit, also those of code that bypasses the service's rules
    (the benchmarks' bulk loader)."""
    _post(client, "Things", f.full_thing())
    store = client.app.state.store  # type: ignore[attr-defined]
    rows = [((1_790_000_000_000_000 + i, None), float(i), 1, 1) for i in range(100)]
    _post(client, "Datastreams(1)/Observations", _observation(1))

    def unit(tx: Any) -> list[int]:
        ids: list[int] = tx.insert_many(
            OBSERVATION, ("phenomenonTime", "result"), ("datastream_id", "feature_of_interest_id"), rows
        )
        tx.delete(OBSERVATION, ids[0])
        return ids

    store.write_sync(unit)
    assert sql(settings, "SELECT count FROM observation_counts WHERE datastream_id = 1") == [(100,)]
    check(client, settings)
