"""The embedded store: SQLite in WAL mode, one writer thread with group commit, a pool of readers.

See ``threaded`` for how writes are batched and committed; here are the
connections (WAL, ``synchronous``, memory-mapped reads, the geometry
functions) and the SQL that differs from other databases.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import ColumnElement, Table, func
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import NullPool

from stadsdata.model.entities import Registry
from stadsdata.query.ast import Bucket
from stadsdata.store import geometry, migrations, timebucket
from stadsdata.store.counts import COUNTS, apply_counts
from stadsdata.store.hours import HOURS, apply_hours
from stadsdata.store.sql import SqlSession
from stadsdata.store.threaded import T, ThreadedStore, TooLong


class SQLiteDialect:
    sa_dialect: Dialect = sa_sqlite.dialect()

    def json_member(self, column: ColumnElement[Any], keys: Sequence[str]) -> ColumnElement[Any]:
        path = "$" + "".join('."' + k.replace('"', '""') + '"' for k in keys)
        return func.json_extract(column, path)

    bbox_prefilter = True  # geometry predicates are Python functions: test the bounding boxes first
    lateral = False
    lateral_expand = False  # a statement per parent costs no round trip on an embedded database
    array_rows = False
    aggregate_setup: str | None = None

    def json_as(self, member: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
        return member  # json_extract gives SQL values of the member's own type

    def index_of(self, text: ColumnElement[Any], part: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.instr(text, part)

    def order(self, column: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
        # SQLite's own null order already is: first when ascending, last when descending.
        return column.desc() if descending else column.asc()

    def conflict_insert(self, table: Table) -> Any:
        return sa_sqlite.insert(table)

    def estimate_rows(self, conn: Any, sql: str, params: Any) -> int | None:
        return None  # SQLite's planner keeps no row estimates to ask for: counts are exact

    def bulk_insert(
        self, conn: Any, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        if not rows:
            return []
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" for _ in columns)
        conn.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)
        # One writer inside one transaction and AUTOINCREMENT: the new ids are consecutive.
        last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        return list(range(last - len(rows) + 1, last + 1))

    def time_part(self, micros: ColumnElement[Any], part: str) -> ColumnElement[Any]:
        fmt = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M", "second": "%S"}[part]
        seconds = func.floor(micros / 1_000_000.0)
        return sqlalchemy.cast(func.strftime(fmt, seconds, "unixepoch"), sqlalchemy.Integer)

    def time_bucket(self, micros: ColumnElement[Any], bucket: Bucket) -> ColumnElement[Any]:
        return func.sd_time_bucket(micros, bucket.step, bucket.unit, bucket.zone, type_=sqlalchemy.BigInteger)

    def geo_predicate(self, predicate: str, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[bool]:
        return func.sd_geo_predicate(predicate, a, b) == 1

    def geo_relate(
        self, a: ColumnElement[Any], b: ColumnElement[Any], pattern: ColumnElement[Any]
    ) -> ColumnElement[bool]:
        return func.sd_geo_relate(a, b, pattern) == 1

    def geo_distance(self, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.sd_geo_distance(a, b)

    def geo_length(self, a: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.sd_geo_length(a)


class SQLiteStore(ThreadedStore):
    """The embedded store. ``path`` is a file; it is created and migrated on open."""

    begin_write = "BEGIN IMMEDIATE"

    def __init__(
        self,
        path: str | Path,
        registry: Registry,
        *,
        synchronous: str = "FULL",
        readers: int = 4,
        max_batch: int = 512,
    ) -> None:
        super().__init__(registry, SQLiteDialect(), readers=readers, max_batch=max_batch)
        self.path = str(path)
        self.register_deferred(COUNTS, apply_counts)
        self.register_deferred(HOURS, apply_hours)
        self.synchronous = synchronous
        self.migrate()

    # -- connections -----------------------------------------------------------------

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        if not write:
            conn.execute("PRAGMA query_only=ON")
            # Reads through memory mapping: no read() call per page (about a fifth off a page of rows).
            # As much of the file as SQLite allows (it clamps this to its compile-time maximum).
            conn.execute("PRAGMA mmap_size=1099511627776")
        geometry.register(conn)
        timebucket.register(conn)
        return conn

    def _in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    at_once_budget = 0.002

    def _bounded(self, session: SqlSession, fn: Callable[[SqlSession], T], budget: float) -> T:
        """A progress handler interrupts SQLite once the statements have run for ``budget`` seconds, so that a
        small read that turns out slow moves to a reader thread instead of holding up the other requests."""
        conn = session.conn
        deadline = time.perf_counter() + budget
        conn.set_progress_handler(lambda: time.perf_counter() > deadline, 1000)
        try:
            return fn(session)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise TooLong from None
            raise
        finally:
            conn.set_progress_handler(None, 0)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration, all in one transaction: a crash or an error
        part of the way leaves the database as it was."""
        engine = migration_engine(self.path)
        try:
            with engine.begin() as conn:
                migrations.upgrade(conn)
        finally:
            engine.dispose()

    def schema_revision(self) -> str | None:
        engine = migration_engine(self.path)
        try:
            with engine.connect() as conn:
                return migrations.current(conn)
        finally:
            engine.dispose()


def migration_engine(path: str | Path) -> sqlalchemy.Engine:
    """An engine whose transactions include DDL.

    Python's sqlite3 module begins a transaction only before INSERT, UPDATE and DELETE, so CREATE and ALTER
    would each commit on their own; here SQLAlchemy's begin is an explicit ``BEGIN IMMEDIATE`` (which also
    keeps a second process from migrating at the same time).
    """
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=NullPool)

    @sqlalchemy.event.listens_for(engine, "connect")
    def connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # not possible inside a transaction

    @sqlalchemy.event.listens_for(engine, "begin")
    def begin(conn: sqlalchemy.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
