"""``$apply`` from the hourly summaries (``store/hours.py``, ``Compiler.hourly``) gives the answers of the
Observations themselves: each query is asked twice, once as it is and once with a filter that means the same
but that the summaries do not answer (so it is computed from every Observation), on each store.

The data cross both daylight saving switches of Europe/Amsterdam in 2026, mix result types, and hold
Observations over an interval; the ranges cut hours at both ends.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.settings import Settings
from stadsdata.store import is_postgres
from tests import fixtures as f

V = "/v1.1"
UTC = dt.UTC
AMS = "Europe/Amsterdam"
AGGREGATES = (
    "aggregate(result with average as mean,result with min as min,result with max as max,"
    "result with sum as total,$count as n)"
)


def _result(i: int) -> Any:
    if i % 13 == 4:
        return None
    if i % 11 == 3:
        return "n/a"
    if i % 17 == 7:
        return i % 2 == 0
    if i % 19 == 11:
        return {"v": i}
    if i % 5 == 0:
        return i % 9 - 4
    return (i % 31) * 0.1 - 1.3  # not exact in binary: sums in another order round differently


def _iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(start: dt.datetime, end: dt.datetime, minutes: int) -> list[dt.datetime]:
    out = []
    while start < end:
        out.append(start)
        start += dt.timedelta(minutes=minutes)
    return out


TIMES = _times(dt.datetime(2026, 3, 27, 20, 3, tzinfo=UTC), dt.datetime(2026, 3, 30, 3, 0, tzinfo=UTC), 7) + _times(
    dt.datetime(2026, 10, 24, 20, 1, tzinfo=UTC), dt.datetime(2026, 10, 26, 5, 0, tzinfo=UTC), 4
)
INTERVALS = [dt.datetime(2026, 3, 28, 10, 10, tzinfo=UTC), dt.datetime(2026, 10, 25, 0, 50, tzinfo=UTC)]


def sql(settings: Settings, query: str) -> None:
    if is_postgres(settings.db):
        with psycopg.connect(settings.db, autocommit=True) as conn:
            conn.execute(query)
    else:
        with sqlite3.connect(settings.db) as conn:
            conn.execute(query)


@pytest.fixture
def data(client: TestClient) -> TestClient:
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    other = f.datastream("other", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1})
    assert client.post(f"{V}/Datastreams", json=other).status_code == 201
    components = ["phenomenonTime", "result"]
    body = [
        {"Datastream": {"@iot.id": 1}, "components": components,
         "dataArray": [[_iso(t), _result(i)] for i, t in enumerate(TIMES)]},
        {"Datastream": {"@iot.id": 2}, "components": components,
         "dataArray": [[_iso(t), 1000.0] for t in TIMES[::3]]},
    ]  # fmt: skip
    r = client.post(f"{V}/CreateObservations", json=body)
    assert r.status_code == 201 and not any(str(x).startswith("error") for x in r.json()), r.text
    for k, t in enumerate(INTERVALS):  # over an interval: ``lt`` compares its end
        span = f"{_iso(t)}/{_iso(t + dt.timedelta(minutes=30 + 60 * k))}"
        r = client.post(f"{V}/Observations", json={"phenomenonTime": span, "result": 7.5, "Datastream": {"@iot.id": 1}})
        assert r.status_code == 201, r.text
    return client


def _ask(client: TestClient, apply: str, path: str = "Datastreams(1)/Observations") -> list[dict[str, Any]]:
    r = client.get(f"{V}/{path}", params={"$apply": apply, "$top": "10000"})
    assert r.status_code == 200, r.text
    assert "@iot.nextLink" not in r.json()
    rows: list[dict[str, Any]] = r.json()["value"]
    return rows


def _same(hourly: list[dict[str, Any]], raw: list[dict[str, Any]]) -> None:
    assert len(hourly) == len(raw)
    for a, b in zip(hourly, raw, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            if name in ("mean", "total") and a[name] is not None and b[name] is not None:
                assert a[name] == pytest.approx(b[name], rel=1e-9, abs=1e-12), (name, a, b)
            else:
                assert a[name] == b[name], (name, a, b)


RANGES = [
    # (lower bound, upper bound): partial hours at both ends; across the spring switch
    ("phenomenonTime ge 2026-03-27T21:30:00+01:00", "phenomenonTime lt 2026-03-30T02:17:00Z"),
    ("phenomenonTime gt 2026-03-28T00:00:00Z", "phenomenonTime le 2026-03-29T05:00:00Z"),
    # whole local days across the autumn switch (25 hours)
    ("phenomenonTime ge 2026-10-25T00:00:00+02:00", "phenomenonTime lt 2026-10-26T00:00:00+01:00"),
    ("2026-10-24T22:00:00Z le phenomenonTime", "2026-10-26T04:30:00Z gt phenomenonTime"),
    # inside one hour: no whole hour at all
    ("phenomenonTime ge 2026-03-28T10:05:00Z", "phenomenonTime lt 2026-03-28T10:55:00Z"),
    # nothing there: no groups, or one without rows
    ("phenomenonTime ge 2026-06-01T00:00:00Z", "phenomenonTime lt 2026-06-03T00:00:00Z"),
]
GROUPS = [
    f"groupby((bucket(phenomenonTime,duration'PT1H','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'PT2H','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'PT6H','UTC') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'P1D','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'P1W','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'P1M','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'PT15M','{AMS}') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'PT1H','Asia/Kolkata') as t),{AGGREGATES})",
    f"groupby((bucket(phenomenonTime,duration'PT1H','{AMS}') as t),aggregate($count as n))",
    AGGREGATES,
]


@pytest.mark.parametrize("bounds", RANGES, ids=range(len(RANGES)))
@pytest.mark.parametrize("group", GROUPS, ids=range(len(GROUPS)))
def test_summaries_answer_as_the_observations_do(data: TestClient, bounds: tuple[str, str], group: str) -> None:
    low, high = bounds
    hourly = _ask(data, f"filter({low} and {high})/{group}")
    raw = _ask(data, f"filter({low} and ({high} or {high}))/{group}")  # the same rows, not from the summaries
    assert raw or "2026-06" in low
    _same(hourly, raw)


def test_summaries_are_read(data: TestClient, settings: Settings) -> None:
    """The hourly path is the one taken (seen by changing a summary behind the store's back), only where it
    applies: a filter on anything but the time, and another path, read the Observations."""
    day = "phenomenonTime ge 2026-03-28T00:00:00Z and phenomenonTime lt 2026-03-29T00:00:00Z"
    group = "groupby((bucket(phenomenonTime,duration'P1D','UTC') as t),aggregate($count as n))"
    before = _ask(data, f"filter({day})/{group}")
    eleven = 1_774_695_600_000_000  # 2026-03-28T11:00:00Z
    sql(settings, f"UPDATE observation_hours SET count = count + 1000 WHERE datastream_id = 1 AND hour = {eleven}")
    after = _ask(data, f"filter({day})/{group}")
    assert after[0]["n"] == before[0]["n"] + 1000
    assert _ask(data, f"filter({day} and id gt 0)/{group}") == before
    assert _ask(data, f"filter({day} and Datastream/@iot.id eq 1)/{group}", "Observations") == before


def test_summaries_follow_writes(data: TestClient) -> None:
    """After deletes and changes the two paths still agree (the store keeps the summaries; tests/store checks
    them against the rows after every kind of write)."""
    ids = [e["@iot.id"] for e in data.get(f"{V}/Datastreams(1)/Observations?$top=40&$select=id").json()["value"]]
    for i in ids[:10]:
        assert data.delete(f"{V}/Observations({i})").status_code == 200
    for i in ids[10:20]:
        assert data.patch(f"{V}/Observations({i})", json={"result": 99.25}).status_code == 200
    for i in ids[20:25]:
        moved = {"phenomenonTime": "2026-03-29T01:30:00Z"}
        assert data.patch(f"{V}/Observations({i})", json=moved).status_code == 200
    low, high = RANGES[0]
    group = GROUPS[0]
    _same(_ask(data, f"filter({low} and {high})/{group}"), _ask(data, f"filter({low} and ({high} or {high}))/{group}"))
