"""Schema migrations (Alembic), for every SQL store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent


def config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    head = ScriptDirectory.from_config(config(None)).get_current_head()
    assert head is not None
    return head


def current(connection: Any) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Any, revision: str = "head") -> None:
    """Bring the schema on ``connection`` (a SQLAlchemy Connection) up to ``revision``."""
    command.upgrade(config(connection), revision)
