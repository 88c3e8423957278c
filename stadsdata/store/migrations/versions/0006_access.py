"""Access control: the access columns of Things, Datastreams and MultiDatastreams (generated from their
``properties``), projects, API tokens, grants and the audit log.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

_ACCESS = {
    "things": ("visibility", "owner", "project"),
    "datastreams": ("visibility", "owner"),
    "multi_datastreams": ("visibility", "owner"),
}


def _expression(member: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"(properties)::jsonb ->> '{member}'"
    return f"json_extract(properties, '$.{member}')"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, members in _ACCESS.items():
        for member in members:
            # Not in batch mode: SQLite adds a virtual generated column in place (a table copy is not needed,
            # and would cascade deletes into the tables that refer to this one).
            computed = sa.Computed(_expression(member, dialect), persisted=dialect == "postgresql")
            op.add_column(table, sa.Column(member, _TEXT, computed, nullable=True))
            op.create_index(f"ix_{table}_{member}", table, [member])
    op.create_table(
        "projects",
        sa.Column("name", _TEXT, nullable=False),
        sa.Column("description", _TEXT, nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projects")),
    )
    op.create_table(
        "tokens",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", _TEXT, nullable=False),
        sa.Column("subject", _TEXT, nullable=False),
        sa.Column("secret_hash", _TEXT, nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=True),
        sa.Column("revoked", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tokens_secret_hash", "tokens", ["secret_hash"], unique=True)
    op.create_index("ix_tokens_subject", "tokens", ["subject"])
    op.create_table(
        "grants",
        sa.Column("subject", _TEXT, nullable=False),
        sa.Column("project", _TEXT, nullable=False),
        sa.Column("role", _TEXT, nullable=False),
        sa.Column("personal", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "project", name=op.f("pk_grants")),
    )
    op.create_table(
        "audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("subject", _TEXT, nullable=True),
        sa.Column("action", _TEXT, nullable=False),
        sa.Column("target", _TEXT, nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_time", "audit", ["time"])
    op.create_index("ix_audit_subject", "audit", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_audit_subject", table_name="audit")
    op.drop_index("ix_audit_time", table_name="audit")
    op.drop_table("audit")
    op.drop_table("grants")
    op.drop_index("ix_tokens_subject", table_name="tokens")
    op.drop_index("ix_tokens_secret_hash", table_name="tokens")
    op.drop_table("tokens")
    op.drop_table("projects")
    for table, members in _ACCESS.items():
        for member in members:
            op.drop_index(f"ix_{table}_{member}", table_name=table)
            # In place on both databases (SQLite 3.35 and later), for the reason given in upgrade().
            op.execute(f"ALTER TABLE {table} DROP COLUMN {member}")
