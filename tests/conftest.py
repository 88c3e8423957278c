"""Shared fixtures: a fresh store per test, the ASGI app over an in-process HTTP client.

Tests that take ``settings`` or ``client`` run on every store: the embedded
SQLite store, and PostgreSQL + PostGIS when ``STADSDATA_TEST_POSTGRES`` names a
server (``scripts/test.sh`` starts one and sets it). Each xdist worker gets
its own PostgreSQL database, emptied before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.model.entities import sensing_registry
from stadsdata.settings import Settings
from stadsdata.store.postgres import PostgresStore

BASE = "http://testserver/v1.1"
POSTGRES = os.environ.get("STADSDATA_TEST_POSTGRES")

# Many servers run at once in a test run; none starts the embedded MQTT broker (port 1883 by default)
# unless its test asks for one (tests/mqtt): in-process apps get ``NO_MQTT``, servers started as a
# process (``stadsdata serve``) the environment variable.
os.environ["STADSDATA_MQTT_PORT"] = "0"
NO_MQTT = {"mqtt_port": 0}
"""A PostgreSQL URL whose role may create databases, e.g. postgresql://stadsdata:stadsdata@127.0.0.1:5432/postgres"""

STORES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            POSTGRES is None, reason="STADSDATA_TEST_POSTGRES is not set (scripts/test.sh sets it)"
        ),
    ),
]


def _database_url(name: str) -> str:
    assert POSTGRES is not None
    base, _, _ = POSTGRES.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_database(worker_id: str, testrun_uid: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test worker in this test run (runs may share a server): its URL."""
    name = f"stadsdata_test_{worker_id}_{testrun_uid[:8]}"
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
    url = _database_url(name)
    PostgresStore(url, sensing_registry())  # creates the schema once
    yield url
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def empty_postgres(url: str) -> None:
    """Remove every row and restart every id sequence, keeping the schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('alembic_version', 'spatial_ref_sys')"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        empty_postgres(url)
        return Settings(db=url, **NO_MQTT)
    return Settings(db=str(tmp_path / "test.db"), synchronous="NORMAL", **NO_MQTT)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c
