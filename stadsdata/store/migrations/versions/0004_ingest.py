"""The ingestion sink: keys of committed messages (redelivery creates nothing) and dead letters.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ingest_keys",
        sa.Column("source", _TEXT, nullable=False),
        sa.Column("key", _TEXT, nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "key", name=op.f("pk_ingest_keys")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source", _TEXT, nullable=False),
        sa.Column("path", _TEXT, nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("reason", _TEXT, nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_dead_letters_source", "dead_letters", ["source"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_source", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("ingest_keys")
