"""Migrations: they build exactly the schema the code declares, and upgrades keep the data."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from stadsdata.model.entities import sensing_registry
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
