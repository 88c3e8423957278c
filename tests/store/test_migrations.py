"""Migrations: they build exactly the schema the code declares, and upgrades keep the data."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from stadsdata.model.entities import (
    DATASTREAM,
    FEATURE_OF_INTEREST,
    MULTI_DATASTREAM,
    OBSERVATION,
    OBSERVED_PROPERTY,
    SENSOR,
    THING,
    sensing_registry,
)
from stadsdata.model.values import GeoValue
from stadsdata.store import migrations
from stadsdata.store.postgres import PostgresStore, sqlalchemy_url
from stadsdata.store.schema import build_metadata
from stadsdata.store.sqlite import SQLiteStore, migration_engine
from tests.conftest import POSTGRES


def _engine(path: Path) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=NullPool)


def test_migrations_build_the_declared_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    SQLiteStore(path, sensing_registry())
    engine = _engine(path)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diff = compare_metadata(ctx, build_metadata(sensing_registry()))
        assert migrations.current(conn) == migrations.head()
    engine.dispose()
    assert diff == [], f"the migrations and the declared schema differ: {diff}"


def test_upgrade_from_the_first_revision_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = _engine(path)
    with engine.begin() as conn:
        migrations.upgrade(conn, "0001")
        assert migrations.current(conn) == "0001"
    engine.dispose()
    with sqlite3.connect(path) as raw:
        raw.executescript(
            "INSERT INTO things (name, description) VALUES ('well', 'groundwater well');"
            "INSERT INTO sensors (name, description, encoding_type, metadata_type, metadata_string)"
            " VALUES ('s', 'd', 'text/plain', 3, 'm');"
            "INSERT INTO observed_properties (name, definition, description) VALUES ('level', 'x', 'd');"
        )
    store = SQLiteStore(path, sensing_registry())  # opening migrates to the newest revision
    assert store.schema_revision() == migrations.head()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name FROM things").fetchall() == [("well",)]
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "multi_datastreams" in tables


def test_opening_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    SQLiteStore(path, sensing_registry())
    with sqlite3.connect(path) as raw:
        before = raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    SQLiteStore(path, sensing_registry())
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == before


def test_an_upgrade_that_fails_part_of_the_way_changes_nothing(tmp_path: Path) -> None:
    """Every revision of an upgrade runs in one transaction: when a later one fails (or the process dies),
    the earlier ones' DDL is rolled back too, and the next start upgrades from where the database was."""
    path = tmp_path / "half.db"
    engine = migration_engine(path)
    with engine.begin() as conn:
        migrations.upgrade(conn, "0004")
    engine.dispose()
    with sqlite3.connect(path) as raw:
        # Revision 0005 adds a column to dead_letters; 0006 then fails on a table that is in its way.
        raw.execute("CREATE TABLE projects (x INTEGER)")
        raw.execute("INSERT INTO projects VALUES (1)")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="projects"):
        SQLiteStore(path, sensing_registry())
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004",)]
        columns = [r[1] for r in raw.execute("PRAGMA table_info(dead_letters)")]
        assert "topic" not in columns  # 0005's ALTER was rolled back with the rest
        raw.execute("DROP TABLE projects")
    store = SQLiteStore(path, sensing_registry())
    assert store.schema_revision() == migrations.head()


@pytest.fixture
def scratch_postgres() -> Iterator[str]:
    """An empty PostgreSQL database of its own."""
    if POSTGRES is None:
        pytest.skip("STADSDATA_TEST_POSTGRES is not set (scripts/test.sh sets it)")
    name = f"stadsdata_migrations_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    yield POSTGRES.rpartition("/")[0] + "/" + name
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.filterwarnings("ignore:Did not recognize type .geometry.")
def test_postgres_migrations_build_the_declared_schema(scratch_postgres: str) -> None:
    PostgresStore(scratch_postgres, sensing_registry())
    engine = sqlalchemy.create_engine(sqlalchemy_url(scratch_postgres), poolclass=NullPool)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diff = [
            d
            for d in compare_metadata(ctx, build_metadata(sensing_registry(), "postgresql"))
            if not (d[0] == "remove_table" and d[1].name == "spatial_ref_sys")  # PostGIS's own table
        ]
    engine.dispose()
    assert diff == [], f"the migrations and the declared schema differ: {diff}"


def test_postgres_upgrade_from_the_first_revision_keeps_data(scratch_postgres: str) -> None:
    engine = sqlalchemy.create_engine(sqlalchemy_url(scratch_postgres), poolclass=NullPool)
    with engine.begin() as conn:
        migrations.upgrade(conn, "0001")
        conn.exec_driver_sql(
            "INSERT INTO locations (name, description, encoding_type, location, location_minx, location_miny,"
            " location_maxx, location_maxy) VALUES ('Roombeek', 'well', 'application/geo+json',"
            ' \'{"type": "Point", "coordinates": [6.89, 52.22]}\', 6.89, 52.22, 6.89, 52.22)'
        )
    engine.dispose()
    store = PostgresStore(scratch_postgres, sensing_registry())
    assert store.schema_revision() == migrations.head()
    with psycopg.connect(scratch_postgres) as conn:
        row = conn.execute("SELECT name, ST_AsText(location_geom) FROM locations").fetchone()
    assert row == ("Roombeek", "POINT(6.89 52.22)")


def _counted_city(store: SQLiteStore | PostgresStore) -> dict[tuple[str, int], int]:
    """Two Datastreams and a MultiDatastream with Observations, written through the store; the counts expected."""

    def unit(tx: Any) -> dict[tuple[str, int], int]:
        thing = tx.insert(THING, {"name": "t", "description": "d"}, {})
        sensor = tx.insert(SENSOR, {"name": "s", "description": "d", "encodingType": "text/plain", "metadata": "m"}, {})
        prop = tx.insert(OBSERVED_PROPERTY, {"name": "p", "definition": "x", "description": "d"}, {})
        point = {"type": "Point", "coordinates": [6.89, 52.22]}
        foi = tx.insert(FEATURE_OF_INTEREST, {"name": "f", "description": "d", "encodingType": "application/geo+json",
                                              "feature": GeoValue(point, (6.89, 52.22, 6.89, 52.22))}, {})  # fmt: skip
        stream = {"description": "d", "unitOfMeasurement": {"name": "m"}, "observationType": "x"}
        links = {"thing_id": thing, "sensor_id": sensor, "observed_property_id": prop}
        ds = [tx.insert(DATASTREAM, {"name": f"d{i}", **stream}, links) for i in range(3)]
        mds = tx.insert(MULTI_DATASTREAM, {"name": "m", "description": "d", "unitOfMeasurements": [{"name": "m"}],
                                           "observationType": "x", "multiObservationDataTypes": ["x"]},
                        {"thing_id": thing, "sensor_id": sensor})  # fmt: skip
        names, fks = ("phenomenonTime", "result"), ("datastream_id", "feature_of_interest_id")
        rows = [((i, None), 1.0 + i % 3, ds[0], foi) for i in range(4)] + [((-1, None), 2.5, ds[0], foi)]
        rows += [((5, 9), 1.0, ds[0], foi), ((3_600_000_000, None), "text", ds[0], foi)]
        tx.insert_many(OBSERVATION, names, fks, rows)
        tx.insert_many(OBSERVATION, names, fks, [((i, None), 1.0, ds[1], foi) for i in range(2)])
        tx.insert_many(OBSERVATION, names, ("multi_datastream_id", "feature_of_interest_id"),
                       [((i, None), [1.0], mds, foi) for i in range(4)])  # fmt: skip
        return {("datastream_id", ds[0]): 7, ("datastream_id", ds[1]): 2, ("multi_datastream_id", mds): 4}

    return store.write_sync(unit)


HOURS = "SELECT datastream_id, hour, count, intervals, numbers, sum, min, max FROM observation_hours ORDER BY 1, 2"
EXPECTED_HOURS = [
    (1, -3_600_000_000, 1, 0, 1, 2.5, 2.5, 2.5),  # before 1970: the hour is the floor
    (1, 0, 5, 1, 5, 8.0, 1.0, 3.0),
    (1, 3_600_000_000, 1, 0, 0, None, None, None),
    (2, 0, 2, 0, 2, 2.0, 1.0, 1.0),
]


def _kept_counts(rows: list[Any]) -> dict[tuple[str, int], int]:
    out = {}
    for ds, mds, n in rows:
        out[("datastream_id", ds) if ds is not None else ("multi_datastream_id", mds)] = n
    return out


def _upgrade_fills_counts_and_hours(
    open_store: Callable[[], Any], engine: sqlalchemy.Engine, query: Callable[[str], list[Any]]
) -> None:
    """Down to 0006 and up again on the store's next start: the counts and summaries are those of the rows."""
    expected = _counted_city(open_store())
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0006")
        assert "observation_counts" not in sqlalchemy.inspect(conn).get_table_names()
    engine.dispose()
    open_store()
    rows = query("SELECT datastream_id, multi_datastream_id, count FROM observation_counts")
    assert _kept_counts(rows) == expected
    assert query(HOURS) == EXPECTED_HOURS


def test_upgrade_counts_the_observations_there_are(tmp_path: Path) -> None:
    """Revisions 0007 and 0008 fill the Observation counts and hourly summaries from the rows of a database that had
    neither."""
    path = tmp_path / "counts.db"

    def query(sql: str) -> list[Any]:
        with sqlite3.connect(path) as raw:
            return raw.execute(sql).fetchall()

    _upgrade_fills_counts_and_hours(lambda: SQLiteStore(path, sensing_registry()), _engine(path), query)


def test_postgres_upgrade_counts_the_observations_there_are(scratch_postgres: str) -> None:
    def query(sql: str) -> list[Any]:
        with psycopg.connect(scratch_postgres) as conn:
            return conn.execute(sql).fetchall()

    engine = sqlalchemy.create_engine(sqlalchemy_url(scratch_postgres), poolclass=NullPool)
    _upgrade_fills_counts_and_hours(lambda: PostgresStore(scratch_postgres, sensing_registry()), engine, query)
