"""Observation counts per Datastream and per MultiDatastream (exact ``$count`` of unfiltered Observations),
filled from the Observations there are.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "observation_counts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("datastream_id", _ID, nullable=True),
        sa.Column("multi_datastream_id", _ID, nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["datastream_id"], ["datastreams.id"], name=op.f("fk_observation_counts_datastream_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["multi_datastream_id"],
            ["multi_datastreams.id"],
            name=op.f("fk_observation_counts_multi_datastream_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_counts")),
        sqlite_autoincrement=True,
    )
    # One pass over the Observations per kind of parent, each on its (parent, time) index.
    op.execute(
        "INSERT INTO observation_counts (datastream_id, count) "
        "SELECT datastream_id, count(*) FROM observations WHERE datastream_id IS NOT NULL GROUP BY datastream_id"
    )
    op.execute(
        "INSERT INTO observation_counts (multi_datastream_id, count) "
        "SELECT multi_datastream_id, count(*) FROM observations WHERE multi_datastream_id IS NOT NULL "
        "GROUP BY multi_datastream_id"
    )
    op.create_index("ix_observation_counts_datastream_id", "observation_counts", ["datastream_id"], unique=True)
    op.create_index(
        "ix_observation_counts_multi_datastream_id", "observation_counts", ["multi_datastream_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_observation_counts_multi_datastream_id", table_name="observation_counts")
    op.drop_index("ix_observation_counts_datastream_id", table_name="observation_counts")
    op.drop_table("observation_counts")
