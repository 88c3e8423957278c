"""PostgreSQL specifics: PostGIS geometry columns with spatial indexes, code-point collation for text.

Nothing changes on SQLite, whose geometry functions work on the GeoJSON text
and whose text already compares by code point.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TEXT_COLUMNS = {
    "things": ["name", "description"],
    "locations": ["name", "description", "encoding_type"],
    "datastreams": ["name", "description", "observation_type"],
    "sensors": ["name", "description", "encoding_type", "metadata_string"],
    "observed_properties": ["name", "definition", "description"],
    "observations": ["result_string", "result_quality_string"],
    "features_of_interest": ["name", "description", "encoding_type"],
    "multi_datastreams": ["name", "description", "observation_type"],
}
GEOMETRY_COLUMNS = [
    ("locations", "location"),
    ("datastreams", "observed_area"),
    ("features_of_interest", "feature"),
    ("multi_datastreams", "observed_area"),
]


def _geometry(column: str) -> str:
    doc = f"({column})::jsonb"
    return (
        f"ST_SetSRID(ST_GeomFromGeoJSON(CASE WHEN {doc} ->> 'type' = 'Feature' "
        f"THEN {doc} -> 'geometry' ELSE {doc} END), 4326)"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    for table, columns in TEXT_COLUMNS.items():
        for column in columns:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE "C"')
    for table, column in GEOMETRY_COLUMNS:
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {column}_geom geometry(Geometry,4326) "
            f"GENERATED ALWAYS AS ({_geometry(column)}) STORED"
        )
        op.execute(f"CREATE INDEX ix_{table}_{column}_geom ON {table} USING gist ({column}_geom)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in GEOMETRY_COLUMNS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}_geom")
    for table, columns in TEXT_COLUMNS.items():
        for column in columns:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE "default"')
