"""The MultiDatastream extension: MultiDatastreams, their ObservedProperties, and
Observations that belong to a Datastream or a MultiDatastream.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "multi_datastreams",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("units_of_measurement", sa.Text(), nullable=False),
        sa.Column("observation_type", sa.Text(), nullable=False),
        sa.Column("multi_observation_data_types", sa.Text(), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["sensor_id"], ["sensors.id"], name=op.f("fk_multi_datastreams_sensor_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thing_id"], ["things.id"], name=op.f("fk_multi_datastreams_thing_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_multi_datastreams")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("multi_datastreams", schema=None) as batch_op:
        batch_op.create_index("ix_multi_datastreams_sensor_id", ["sensor_id"], unique=False)
        batch_op.create_index("ix_multi_datastreams_thing_id", ["thing_id"], unique=False)

    op.create_table(
        "multi_datastream_observed_properties",
        sa.Column("multi_datastream_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("observed_property_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["multi_datastream_id"],
            ["multi_datastreams.id"],
            name=op.f("fk_multi_datastream_observed_properties_multi_datastream_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["observed_property_id"],
            ["observed_properties.id"],
            name=op.f("fk_multi_datastream_observed_properties_observed_property_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "multi_datastream_id", "observed_property_id", name=op.f("pk_multi_datastream_observed_properties")
        ),
    )
    with op.batch_alter_table("multi_datastream_observed_properties", schema=None) as batch_op:
        batch_op.create_index(
            "ix_multi_datastream_observed_properties_observed_property_id", ["observed_property_id"], unique=False
        )

    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("multi_datastream_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.alter_column("datastream_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(
            "ix_observations_multi_datastream_time",
            ["multi_datastream_id", "phenomenon_time_start", "id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_observations_multi_datastream_id"),
            "multi_datastreams",
            ["multi_datastream_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_observations_multi_datastream_id"), type_="foreignkey")
        batch_op.drop_index("ix_observations_multi_datastream_time")
        batch_op.alter_column("datastream_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("multi_datastream_id")

    with op.batch_alter_table("multi_datastream_observed_properties", schema=None) as batch_op:
        batch_op.drop_index("ix_multi_datastream_observed_properties_observed_property_id")

    op.drop_table("multi_datastream_observed_properties")
    with op.batch_alter_table("multi_datastreams", schema=None) as batch_op:
        batch_op.drop_index("ix_multi_datastreams_thing_id")
        batch_op.drop_index("ix_multi_datastreams_sensor_id")

    op.drop_table("multi_datastreams")
