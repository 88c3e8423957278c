"""The stores: SQLite (embedded, the default) and PostgreSQL + PostGIS (production)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stadsdata.model.entities import Registry
    from stadsdata.store.threaded import ThreadedStore


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def open_store(db: str, registry: Registry, *, synchronous: str = "FULL") -> ThreadedStore:
    """The store for ``db``: a ``postgresql://`` URL or a SQLite file path; created or migrated as needed."""
    if is_postgres(db):
        from stadsdata.store.postgres import PostgresStore

        return PostgresStore(db.replace("postgresql+psycopg://", "postgresql://", 1), registry)
    from stadsdata.store.sqlite import SQLiteStore

    return SQLiteStore(db, registry, synchronous=synchronous)
