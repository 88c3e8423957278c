"""The production store: PostgreSQL with PostGIS, through psycopg 3.

The same writer (group commit) and readers as the embedded store (see
``threaded``), on connections to a PostgreSQL server. What differs is the SQL
of a few functions, null ordering, JSON access, geometry (PostGIS columns
computed from the GeoJSON, with GiST indexes) and the bulk path (COPY).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
import sqlalchemy
from psycopg.types.string import TextLoader
from sqlalchemy import Column, ColumnElement, Table, cast, func
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import ColumnClause

from stadsdata.model.entities import Registry
from stadsdata.query.ast import Bucket
from stadsdata.store import migrations
from stadsdata.store.counts import COUNTS, apply_counts
from stadsdata.store.hours import HOURS, apply_hours
from stadsdata.store.pipeline import PipelinedConnection, take_ids
from stadsdata.store.threaded import ThreadedStore


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL for a ``postgresql://`` DSN (with the psycopg 3 driver)."""
    scheme, rest = dsn.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else dsn


class PostgresDialect:
    sa_dialect: Dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]
    bbox_prefilter = False  # the GiST index on the geometry columns does that
    lateral = True
    lateral_expand = True  # one statement for all parents: each statement is a round trip
    array_rows = True
    # Room to sort or hash a year of a Datastream's rows in memory (the default 4 MB spills them to disk, which
    # doubles the time of hourly means over a year); for the read transaction of a $apply only.
    aggregate_setup: str | None = "SET LOCAL work_mem = '32MB'"

    def json_member(self, column: ColumnElement[Any], keys: Sequence[str]) -> ColumnElement[Any]:
        return cast(column, JSONB)[list(keys)]

    def json_as(self, member: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
        """A JSON member as ``kind``: text (any value, as text), or number, string, bool (NULL when it is not)."""
        text = member.astext
        if kind == "text":
            return text  # type: ignore[no-any-return]
        json_type = {"number": "number", "string": "string", "bool": "boolean"}[kind]
        value = {"number": cast(text, sqlalchemy.Float), "string": text, "bool": cast(text, sqlalchemy.Boolean)}[kind]
        return sqlalchemy.case((func.jsonb_typeof(member) == json_type, value), else_=None)

    def order(self, column: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
        """SQLite's null order (first when ascending, last when descending), so both stores agree.

        A column that cannot be null gets no NULLS clause: then a B-tree index serves the
        order in either direction (``ORDER BY phenomenon_time_start DESC, id DESC``).
        """
        if isinstance(column, Column) and not column.nullable:
            return column.desc() if descending else column.asc()
        return column.desc().nulls_last() if descending else column.asc().nulls_first()

    def index_of(self, text: ColumnElement[Any], part: ColumnElement[Any]) -> ColumnElement[Any]:
        """1-based position of ``part`` in ``text``, 0 when absent."""
        return func.strpos(text, part)

    def conflict_insert(self, table: Table) -> Any:
        return sa_pg.insert(table)

    def estimate_rows(self, conn: Any, sql: str, params: Any) -> int | None:
        """The planner's row estimate (from the table statistics that autovacuum keeps)."""
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
        if isinstance(plan, str):
            plan = orjson.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    def bulk_insert(
        self, conn: Any, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """COPY the rows in, with ids taken from the table's sequence beforehand."""
        if not rows:
            return []
        ids = take_ids(conn, table.name, len(rows))
        names = ", ".join(f'"{c}"' for c in ("id", *columns))
        with conn.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for new_id, row in zip(ids, rows, strict=True):
                copy.write_row((new_id, *row))
        return ids

    def time_part(self, micros: ColumnElement[Any], part: str) -> ColumnElement[Any]:
        stamp = func.timezone("UTC", func.to_timestamp(micros / 1_000_000.0))
        if part == "second":
            return cast(func.floor(func.date_part(part, stamp)), sqlalchemy.Integer)
        return cast(func.date_part(part, stamp), sqlalchemy.Integer)

    def time_bucket(self, micros: ColumnElement[Any], bucket: Bucket) -> ColumnElement[Any]:
        """The bucket start as in ``store/timebucket.py``: ``date_trunc`` in the zone, in exact microseconds.

        The instant is built from whole seconds plus microseconds, so no double rounds it.
        """
        micro = sqlalchemy.literal_column("INTERVAL '1 microsecond'", sqlalchemy.Interval())
        million = sqlalchemy.literal(1_000_000, sqlalchemy.BigInteger)
        # bigint operators, not div()/mod(), which work in NUMERIC and cost a third of the query.
        seconds = micros.self_group().op("/")(million).self_group()
        stamp = func.to_timestamp(seconds) + micros.self_group().op("%")(million).self_group().op("*")(micro)
        start = func.date_trunc(bucket.unit or "day", stamp, bucket.zone)
        start_us = cast(sqlalchemy.extract("epoch", start) * 1_000_000, sqlalchemy.BigInteger)
        if bucket.unit:
            return start_us
        step = sqlalchemy.literal(bucket.step, sqlalchemy.BigInteger)
        # start + (t - start) / step * step, written with start once (date_trunc in a zone is the costly
        # part); bigint operators (the dividend is never negative), grouped explicitly: SQLAlchemy's true
        # division would cast to NUMERIC, and custom operators are not parenthesised.
        return (micros - (micros - start_us).self_group().op("%")(step).self_group()).self_group()

    @staticmethod
    def _geom(value: ColumnElement[Any]) -> ColumnElement[Any]:
        if isinstance(value, ColumnClause) and value.table is not None:
            return value.table.c[f"{value.name}_geom"]
        return func.ST_GeomFromText(value, 4326)

    def geo_predicate(self, predicate: str, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[bool]:
        fn = getattr(func, f"ST_{predicate.capitalize()}")
        return fn(self._geom(a), self._geom(b))  # type: ignore[no-any-return]

    def geo_relate(
        self, a: ColumnElement[Any], b: ColumnElement[Any], pattern: ColumnElement[Any]
    ) -> ColumnElement[bool]:
        return func.ST_Relate(self._geom(a), self._geom(b), pattern)

    def geo_distance(self, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.ST_Distance(self._geom(a), self._geom(b))

    def geo_length(self, a: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.ST_Length(self._geom(a))


class PostgresStore(ThreadedStore):
    """The PostgreSQL store; ``dsn`` is a ``postgresql://user:password@host:port/database`` URL."""

    begin_read = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    snapshot_always = False

    def __init__(self, dsn: str, registry: Registry, *, readers: int = 4, max_batch: int = 512) -> None:
        super().__init__(registry, PostgresDialect(), readers=readers, max_batch=max_batch, dialect_name="postgresql")
        self.dsn = dsn
        self.register_deferred(COUNTS, apply_counts)
        self.register_deferred(HOURS, apply_hours)
        self.migrate()

    def _connect(self, *, write: bool) -> Any:
        """A reader's connection, or the writer's, which sends what it need not wait for (``pipeline``)."""
        conn = psycopg.connect(self.dsn, autocommit=True)
        # No JIT: it compiles for 50–100 ms whenever the planner's estimate passes jit_above_cost, which
        # aggregations over a large table do, while these queries run in milliseconds without it.
        conn.execute("SET jit = off")
        if not write:
            # A plan for each execution's own values: psycopg prepares a statement run five times, and after five
            # more PostgreSQL may switch to a generic plan that does not know the parameters. For the listing of
            # one Datastream's Observations by id (the default order) that plan walks the whole primary key
            # (1.5 s instead of 0.2 ms on a million rows); planning again each time costs a fraction of a ms.
            # Not for the writer: there it also planned the foreign key checks again for every row written
            # (they are cached plans too), which doubled the time of a COPY of 10,000 Observations.
            conn.execute("SET plan_cache_mode = force_custom_plan")
        # JSON columns are read as their text, as from SQLite; the codec parses them.
        conn.adapters.register_loader("jsonb", TextLoader)
        conn.adapters.register_loader("json", TextLoader)
        return PipelinedConnection(conn) if write else conn

    def _in_transaction(self, conn: Any) -> bool:
        return bool(conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    def _engine(self) -> sqlalchemy.Engine:
        return sqlalchemy.create_engine(sqlalchemy_url(self.dsn), poolclass=NullPool)

    def migrate(self) -> None:
        engine = self._engine()
        try:
            with engine.begin() as conn:
                migrations.upgrade(conn)
        finally:
            engine.dispose()

    def schema_revision(self) -> str | None:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                return migrations.current(conn)
        finally:
            engine.dispose()
