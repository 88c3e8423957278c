"""Hourly summaries of each Datastream's Observations (``$apply`` over whole hours), filled from the Observations
there are.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HOUR = 3_600_000_000


def upgrade() -> None:
    op.create_table(
        "observation_hours",
        sa.Column("datastream_id", _ID, nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("intervals", sa.BigInteger(), nullable=False),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["datastream_id"], ["datastreams.id"], name=op.f("fk_observation_hours_datastream_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("datastream_id", "hour", name=op.f("pk_observation_hours")),
        sqlite_with_rowid=False,
    )
    # One pass over the Observations of Datastreams; the hour is the floor also before 1970 (% truncates).
    start = "phenomenon_time_start"
    hour = f"({start} - (({start} % {HOUR}) + {HOUR}) % {HOUR})"
    number = "CASE WHEN result_type IN (1, 2) THEN result_number END"
    op.execute(
        "INSERT INTO observation_hours (datastream_id, hour, count, intervals, numbers, sum, min, max) "
        f"SELECT datastream_id, {hour}, count(*), count(phenomenon_time_end), count({number}), sum({number}), "
        f"min({number}), max({number}) FROM observations WHERE datastream_id IS NOT NULL "
        f"GROUP BY datastream_id, {hour} ORDER BY datastream_id, {hour}"  # each Datastream's hours together
    )


def downgrade() -> None:
    op.drop_table("observation_hours")
