"""The SensorThings 1.1 sensing schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "features_of_interest",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("encoding_type", sa.Text(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=False),
        sa.Column("feature_minx", sa.Float(), nullable=False),
        sa.Column("feature_miny", sa.Float(), nullable=False),
        sa.Column("feature_maxx", sa.Float(), nullable=False),
        sa.Column("feature_maxy", sa.Float(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_features_of_interest")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "locations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("encoding_type", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("location_minx", sa.Float(), nullable=False),
        sa.Column("location_miny", sa.Float(), nullable=False),
        sa.Column("location_maxx", sa.Float(), nullable=False),
        sa.Column("location_maxy", sa.Float(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.Column("generated_foi_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "observed_properties",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observed_properties")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sensors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("encoding_type", sa.Text(), nullable=False),
        sa.Column("metadata_type", sa.SmallInteger(), nullable=False),
        sa.Column("metadata_number", sa.Float(), nullable=True),
        sa.Column("metadata_string", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensors")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "things",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_things")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "datastreams",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("unit_of_measurement", sa.Text(), nullable=False),
        sa.Column("observation_type", sa.Text(), nullable=False),
        sa.Column("observed_area", sa.Text(), nullable=True),
        sa.Column("observed_area_minx", sa.Float(), nullable=True),
        sa.Column("observed_area_miny", sa.Float(), nullable=True),
        sa.Column("observed_area_maxx", sa.Float(), nullable=True),
        sa.Column("observed_area_maxy", sa.Float(), nullable=True),
        sa.Column("phenomenon_time_start", sa.BigInteger(), nullable=True),
        sa.Column("phenomenon_time_end", sa.BigInteger(), nullable=True),
        sa.Column("result_time_start", sa.BigInteger(), nullable=True),
        sa.Column("result_time_end", sa.BigInteger(), nullable=True),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.Column("thing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sensor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("observed_property_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["observed_property_id"],
            ["observed_properties.id"],
            name=op.f("fk_datastreams_observed_property_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sensor_id"], ["sensors.id"], name=op.f("fk_datastreams_sensor_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["thing_id"], ["things.id"], name=op.f("fk_datastreams_thing_id"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datastreams")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_datastreams_observed_property_id", "datastreams", ["observed_property_id"], unique=False)
    op.create_index("ix_datastreams_sensor_id", "datastreams", ["sensor_id"], unique=False)
    op.create_index("ix_datastreams_thing_id", "datastreams", ["thing_id"], unique=False)
    op.create_table(
        "historical_locations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("thing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["thing_id"], ["things.id"], name=op.f("fk_historical_locations_thing_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_historical_locations")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_historical_locations_thing_time", "historical_locations", ["thing_id", "time"], unique=False)
    op.create_table(
        "thing_locations",
        sa.Column("thing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_thing_locations_location_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thing_id"], ["things.id"], name=op.f("fk_thing_locations_thing_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("thing_id", "location_id", name=op.f("pk_thing_locations")),
    )
    op.create_index("ix_thing_locations_location_id", "thing_locations", ["location_id"], unique=False)
    op.create_table(
        "location_historical_locations",
        sa.Column("location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("historical_location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["historical_location_id"],
            ["historical_locations.id"],
            name=op.f("fk_location_historical_locations_historical_location_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_location_historical_locations_location_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("location_id", "historical_location_id", name=op.f("pk_location_historical_locations")),
    )
    op.create_index(
        "ix_location_historical_locations_historical_location_id",
        "location_historical_locations",
        ["historical_location_id"],
        unique=False,
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("phenomenon_time_start", sa.BigInteger(), nullable=False),
        sa.Column("phenomenon_time_end", sa.BigInteger(), nullable=True),
        sa.Column("result_time", sa.BigInteger(), nullable=True),
        sa.Column("result_type", sa.SmallInteger(), nullable=True),
        sa.Column("result_number", sa.Float(), nullable=True),
        sa.Column("result_string", sa.Text(), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("result_quality_type", sa.SmallInteger(), nullable=True),
        sa.Column("result_quality_number", sa.Float(), nullable=True),
        sa.Column("result_quality_string", sa.Text(), nullable=True),
        sa.Column("result_quality_json", sa.Text(), nullable=True),
        sa.Column("valid_time_start", sa.BigInteger(), nullable=True),
        sa.Column("valid_time_end", sa.BigInteger(), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=True),
        sa.Column("datastream_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("feature_of_interest_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["datastream_id"], ["datastreams.id"], name=op.f("fk_observations_datastream_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["feature_of_interest_id"],
            ["features_of_interest.id"],
            name=op.f("fk_observations_feature_of_interest_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_observations_datastream_time",
        "observations",
        ["datastream_id", "phenomenon_time_start", "id"],
        unique=False,
    )
    op.create_index("ix_observations_foi", "observations", ["feature_of_interest_id"], unique=False)
    op.create_index("ix_observations_time", "observations", ["phenomenon_time_start"], unique=False)


def downgrade() -> None:
    for table in (
        "location_historical_locations",
        "thing_locations",
        "observations",
        "historical_locations",
        "datastreams",
        "things",
        "sensors",
        "observed_properties",
        "locations",
        "features_of_interest",
    ):
        op.drop_table(table)
