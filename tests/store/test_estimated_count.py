"""``Prefer: count=estimated``: $count from the database's statistics when they say the set is big."""

from __future__ import annotations

import dataclasses

import psycopg
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.settings import Settings
from stadsdata.store import is_postgres
from tests import fixtures as f

URL = "/v1.1/Things?$count=true&$top=1"
PREFER = {"Prefer": "count=estimated"}


def _things(client: TestClient, n: int) -> None:
    for k in range(n):
        assert client.post("/v1.1/Things", json=f.thing(f"t{k}")).status_code == 201


def test_small_counts_stay_exact(client: TestClient) -> None:
    _things(client, 3)
    for headers in ({}, PREFER):
        r = client.get(URL, headers=headers)
        assert r.json()["@iot.count"] == 3
        assert "preference-applied" not in r.headers


def test_estimate_above_the_threshold(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, estimated_count_above=1))
    with TestClient(app, base_url="http://testserver") as client:
        _things(client, 30)
        client.post("/v1.1/Things", json=f.thing("with a filter"))
        if is_postgres(settings.db):
            with psycopg.connect(settings.db, autocommit=True) as conn:
                conn.execute("ANALYZE things")
        r = client.get(URL, headers=PREFER)
        assert r.status_code == 200
        if is_postgres(settings.db):  # the statistics know the table's size exactly after ANALYZE
            assert r.headers["preference-applied"] == "count=estimated"
            assert r.json()["@iot.count"] == 31
        else:  # SQLite has no estimates to offer: the count is exact
            assert "preference-applied" not in r.headers
            assert r.json()["@iot.count"] == 31
        assert client.get(URL).json()["@iot.count"] == 31  # exact without the preference
        filtered = client.get(URL + "&$filter=name eq 'with a filter'", headers=PREFER)
        assert filtered.json()["@iot.count"] == 1  # estimated at one row: not above the threshold, so exact
        assert "preference-applied" not in filtered.headers


def test_observations_are_counted_exactly_from_the_kept_counts(settings: Settings) -> None:
    """A set of Observations that only its path restricts is counted from the counts per Datastream: exact, also
    when an estimate would do; a filtered one may still be estimated."""
    app = create_app(dataclasses.replace(settings, estimated_count_above=1))
    with TestClient(app, base_url="http://testserver") as client:
        assert client.post("/v1.1/Things", json=f.full_thing()).status_code == 201
        for k in range(25):
            obs = {"result": k, "phenomenonTime": f"2026-11-22T10:{k:02d}:00Z"}
            assert client.post("/v1.1/Datastreams(1)/Observations", json=obs).status_code == 201
        if is_postgres(settings.db):
            with psycopg.connect(settings.db, autocommit=True) as conn:
                conn.execute("ANALYZE observations")
        for path in ("Observations", "Datastreams(1)/Observations"):
            r = client.get(f"/v1.1/{path}?$count=true&$top=1", headers=PREFER)
            assert r.json()["@iot.count"] == 25
            assert "preference-applied" not in r.headers
        filtered = client.get("/v1.1/Observations?$count=true&$top=1&$filter=result ge 0", headers=PREFER)
        if is_postgres(settings.db):
            assert filtered.headers["preference-applied"] == "count=estimated"
