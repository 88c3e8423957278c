"""The fixture city of the query tests, on every store.

The city is built once per test module. On PostgreSQL it gets a database of
its own (per module and xdist worker), because the per-test ``settings``
fixture empties the worker's shared database before every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.settings import Settings
from tests.conftest import NO_MQTT, POSTGRES, STORES
from tests.query.city import City, build_city


def _private_database(name: str) -> str:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
    base, _, _ = POSTGRES.rpartition("/")
    return f"{base}/{name}"


def _drop_database(name: str) -> None:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", params=STORES)
def city_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[tuple[TestClient, City]]:
    """A client over the fixture city of ``city.py``, and the city's definition with its ids."""
    name = None
    if request.param == "postgresql":
        module = request.module.__name__.rpartition(".")[2]
        name = f"stadsdata_{module}_{worker_id}".lower()
        settings = Settings(db=_private_database(name), **NO_MQTT)
    else:
        db = Path(tmp_path_factory.mktemp("city")) / "city.db"
        settings = Settings(db=str(db), synchronous="NORMAL", **NO_MQTT)
    try:
        with TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False) as client:
            yield client, build_city(client)
    finally:
        if name is not None:
            _drop_database(name)
