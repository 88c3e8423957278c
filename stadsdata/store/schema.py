"""The SQL schema, derived from the entity registry.

Each property kind maps to a fixed set of columns (see ``columns_for``); the
codec (``codec.py``) converts between property values and those columns. The
migrations in ``migrations/versions`` create exactly this schema; a test
compares the two, so a change here needs a migration.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine, UserDefinedType

from stadsdata.model.entities import EntityType, FkOnSource, Kind, Property, Registry

# Row ids are 64-bit; SQLite needs the INTEGER spelling to make the column an alias of rowid.
Id: TypeEngine[Any] = BigInteger().with_variant(Integer(), "sqlite")
# Text compares and sorts by code point on every database (SQLite's BINARY, PostgreSQL's "C"),
# so that results do not depend on a server's locale.
String: TypeEngine[Any] = Text().with_variant(Text(collation="C"), "postgresql")


class Geometry(UserDefinedType[Any]):
    """PostGIS ``geometry`` in WGS 84 (only on PostgreSQL)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "geometry(Geometry,4326)"


def geometry_expression(column: str) -> str:
    """SQL for the PostGIS geometry of a GeoJSON text column (a geometry or a Feature)."""
    doc = f"({column})::jsonb"
    return (
        f"ST_SetSRID(ST_GeomFromGeoJSON(CASE WHEN {doc} ->> 'type' = 'Feature' "
        f"THEN {doc} -> 'geometry' ELSE {doc} END), 4326)"
    )


def columns_for(prop: Property) -> list[tuple[str, TypeEngine[Any]]]:
    """The (column name, type) pairs that hold one property."""
    c = prop.column
    kind = prop.kind
    if kind in (Kind.STRING, Kind.URI):
        return [(c, String)]
    if kind in (Kind.OBJECT, Kind.ARRAY):
        return [(c, Text())]
    if kind is Kind.ANY:
        # Typed columns so that filters and aggregates on numbers use a REAL
        # column and an index, while any JSON value still round-trips.
        return [(f"{c}_type", SmallInteger()), (f"{c}_number", Float()), (f"{c}_string", String), (f"{c}_json", Text())]
    if kind is Kind.GEOMETRY:
        return [(c, Text())] + [(f"{c}_{b}", Float()) for b in ("minx", "miny", "maxx", "maxy")]
    if kind is Kind.INSTANT:
        return [(c, BigInteger())]
    return [(f"{c}_start", BigInteger()), (f"{c}_end", BigInteger())]


# Columns that are not properties: bookkeeping the rules need.
_EXTRA_COLUMNS: dict[str, list[Column[object]]] = {
    # The FeatureOfInterest generated from this Location, reused by later Observations.
    "locations": [Column("generated_foi_id", Id, nullable=True)],
}

# The access columns (``stadsdata/access``): members of ``properties`` that the database keeps as columns of
# their own, generated from the JSON on every write, so that the access policy compares plain columns.
ACCESS_COLUMNS: dict[str, tuple[str, ...]] = {
    "things": ("visibility", "owner", "project"),
    "datastreams": ("visibility", "owner"),
    "multi_datastreams": ("visibility", "owner"),
}


def access_expression(member: str, dialect: str) -> str:
    """SQL for a member of the ``properties`` JSON text (NULL when absent)."""
    if dialect == "postgresql":
        return f"(properties)::jsonb ->> '{member}'"
    return f"json_extract(properties, '$.{member}')"


def access_column(member: str, dialect: str) -> Column[object]:
    """Generated from ``properties``: stored on PostgreSQL, virtual on SQLite (whose ALTER TABLE can only add
    virtual ones; an index on it is stored)."""
    return Column(member, String, Computed(access_expression(member, dialect), persisted=dialect == "postgresql"))


# Indexes for the queries users send: newest N of a datastream, time windows,
# navigation in both directions.
_EXTRA_INDEXES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "observations": [
        ("ix_observations_datastream_time", ("datastream_id", "phenomenon_time_start", "id")),
        ("ix_observations_multi_datastream_time", ("multi_datastream_id", "phenomenon_time_start", "id")),
        ("ix_observations_foi", ("feature_of_interest_id",)),
        ("ix_observations_time", ("phenomenon_time_start",)),
    ],
    "historical_locations": [("ix_historical_locations_thing_time", ("thing_id", "time"))],
}


def _not_null(prop: Property, name: str) -> bool:
    if prop.nullable or prop.generated:
        return False
    if prop.kind is Kind.INSTANT_OR_INTERVAL:
        return name.endswith("_start")
    if prop.kind is Kind.GEOMETRY:
        return True
    if prop.kind is Kind.ANY:
        return name.endswith("_type")
    return prop.kind is not Kind.INTERVAL


def build_metadata(registry: Registry, dialect: str = "sqlite") -> MetaData:
    """The tables of ``registry`` on ``dialect`` ("sqlite" or "postgresql").

    On PostgreSQL each geometry property also gets a PostGIS column computed
    from its GeoJSON (``<column>_geom``) with a GiST index, for the geo
    functions of ``$filter``.
    """
    # Named constraints, so that migrations can refer to them on every database.
    meta = MetaData(naming_convention={"fk": "fk_%(table_name)s_%(column_0_name)s", "pk": "pk_%(table_name)s"})
    for entity in registry:
        cols: list[Column[object]] = [Column("id", Id, primary_key=True, autoincrement=True)]
        for prop in entity.properties:
            for name, type_ in columns_for(prop):
                cols.append(Column(name, type_, nullable=not _not_null(prop, name)))
        indexed = {ix_cols[0] for _, ix_cols in _EXTRA_INDEXES.get(entity.table, [])}
        indexes: list[Index] = []
        for rel in entity.relations:
            storage = registry.storage(rel)
            if not isinstance(storage, FkOnSource):
                continue
            target = registry.target(rel)
            cols.append(
                Column(
                    storage.column,
                    Id,
                    ForeignKey(f"{target.table}.id", ondelete="CASCADE"),
                    nullable=not rel.required,
                )
            )
            if storage.column not in indexed:
                indexes.append(Index(f"ix_{entity.table}_{storage.column}", storage.column))
        cols.extend(c._copy() for c in _EXTRA_COLUMNS.get(entity.table, []))
        for member in ACCESS_COLUMNS.get(entity.table, ()):
            cols.append(access_column(member, dialect))
            indexes.append(Index(f"ix_{entity.table}_{member}", member))
        if dialect == "postgresql":
            for prop in entity.properties:
                if prop.kind is Kind.GEOMETRY:
                    geom = f"{prop.column}_geom"
                    cols.append(Column(geom, Geometry(), Computed(geometry_expression(prop.column), persisted=True)))
                    indexes.append(Index(f"ix_{entity.table}_{geom}", geom, postgresql_using="gist"))
        table = Table(entity.table, meta, *cols, *indexes, sqlite_autoincrement=True)
        for ix_name, ix_cols in _EXTRA_INDEXES.get(entity.table, []):
            if all(c in table.c for c in ix_cols):
                Index(ix_name, *(table.c[c] for c in ix_cols))
    for entity in registry:
        for rel in entity.relations:
            if rel.link is None:
                continue
            link_table, source_col, target_col = rel.link
            target = registry.target(rel)
            Table(
                link_table,
                meta,
                Column(source_col, Id, ForeignKey(f"{entity.table}.id", ondelete="CASCADE"), primary_key=True),
                Column(target_col, Id, ForeignKey(f"{target.table}.id", ondelete="CASCADE"), primary_key=True),
                Index(f"ix_{link_table}_{target_col}", target_col),
            )
    _ingest_tables(meta)
    _access_tables(meta)
    if "observations" in meta.tables:
        _observation_counts(meta)
        _observation_hours(meta)
    return meta


def _observation_hours(meta: MetaData) -> None:
    """``observation_hours``: a summary of each Datastream's Observations per UTC hour of their phenomenonTime
    (start): how many (``count``), how many over an interval (``intervals``), how many with a numeric result
    (``numbers``) and those results' ``sum``, ``min`` and ``max``. Kept exact by the store in the transaction of
    every write (``store/hours.py``); ``$apply`` reads whole hours from here where that gives the same answer
    (``Compiler.hourly``). ``hour`` is the hour's start in microseconds since 1970 UTC.
    """
    Table(
        "observation_hours",
        meta,
        Column("datastream_id", Id, ForeignKey("datastreams.id", ondelete="CASCADE"), primary_key=True),
        Column("hour", BigInteger, primary_key=True),
        Column("count", BigInteger, nullable=False),
        Column("intervals", BigInteger, nullable=False),
        Column("numbers", BigInteger, nullable=False),
        Column("sum", Float),
        Column("min", Float),
        Column("max", Float),
        # On SQLite the rows are kept in primary key order (Datastream, hour): a year of one Datastream is ~100
        # adjacent pages, however the writes came in.
        sqlite_with_rowid=False,
    )


def _observation_counts(meta: MetaData) -> None:
    """``observation_counts``: how many Observations each Datastream and each MultiDatastream has.

    One row per parent, with either ``datastream_id`` or ``multi_datastream_id``; kept exact by the store in
    the transaction of every write (``store/counts.py``), so that ``$count`` of an unfiltered set of
    Observations is a sum over at most one row per parent. A parent's row goes with it (``ON DELETE CASCADE``).
    """
    Table(
        "observation_counts",
        meta,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("datastream_id", Id, ForeignKey("datastreams.id", ondelete="CASCADE")),
        Column("multi_datastream_id", Id, ForeignKey("multi_datastreams.id", ondelete="CASCADE")),
        Column("count", BigInteger, nullable=False),
        Index("ix_observation_counts_datastream_id", "datastream_id", unique=True),
        Index("ix_observation_counts_multi_datastream_id", "multi_datastream_id", unique=True),
        sqlite_autoincrement=True,
    )


def _access_tables(meta: MetaData) -> None:
    """Access control (``stadsdata/access``).

    ``projects``: groups of Things (a Thing's ``properties.project``). ``tokens``: API tokens, each acting for
    a ``subject``; only the SHA-256 of the secret is kept. ``grants``: a subject's role in a project (``*``:
    every project) and whether it may read other people's personal data there. ``audit``: who read or
    changed personal data, and how.
    """
    Table(
        "projects",
        meta,
        Column("name", String, primary_key=True),
        Column("description", String, nullable=False),
        Column("created", BigInteger, nullable=False),
    )
    Table(
        "tokens",
        meta,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("name", String, nullable=False),
        Column("subject", String, nullable=False),
        Column("secret_hash", String, nullable=False),
        Column("created", BigInteger, nullable=False),
        Column("expires", BigInteger),
        Column("revoked", BigInteger),
        Index("ix_tokens_secret_hash", "secret_hash", unique=True),
        Index("ix_tokens_subject", "subject"),
        sqlite_autoincrement=True,
    )
    Table(
        "grants",
        meta,
        Column("subject", String, primary_key=True),
        Column("project", String, primary_key=True),
        Column("role", String, nullable=False),
        Column("personal", SmallInteger, nullable=False),
    )
    Table(
        "audit",
        meta,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("time", BigInteger, nullable=False),
        Column("subject", String),
        Column("action", String, nullable=False),
        Column("target", String, nullable=False),
        Column("status", Integer, nullable=False),
        Index("ix_audit_time", "time"),
        Index("ix_audit_subject", "subject"),
        sqlite_autoincrement=True,
    )


def _ingest_tables(meta: MetaData) -> None:
    """The ingestion sink's bookkeeping (``stadsdata/ingest/base.py``).

    ``ingest_keys``: the (source, key) of every committed message, written in the same
    transaction as its readings, so that a redelivered message creates nothing.
    ``dead_letters``: payloads that could not be decoded or stored, with the reason, until
    an operator replays or deletes them.
    """
    Table(
        "ingest_keys",
        meta,
        Column("source", String, primary_key=True),
        Column("key", String, primary_key=True),
        Column("received", BigInteger, nullable=False),
    )
    Table(
        "dead_letters",
        meta,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("source", String, nullable=False),
        Column("path", String, nullable=False),
        Column("received", BigInteger, nullable=False),
        Column("reason", String, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("topic", String),
        Index("ix_dead_letters_source", "source"),
        sqlite_autoincrement=True,
    )


def entity_columns(entity: EntityType) -> list[str]:
    """All columns of an entity's table that hold properties, in declaration order."""
    return [name for prop in entity.properties for name, _ in columns_for(prop)]
