"""Settings: one model, passed to the application factory; nothing is read at import time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    db: str = "stadsdata.db"
    """The database: a file path for the embedded SQLite store."""
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str | None = None
    """The public URL of the service root (…/v1.1) used in links; derived from each request when unset."""
    default_top: int = 100
    max_top: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    estimated_count_above: int = 1_000_000
    """With ``Prefer: count=estimated``, a $count the database estimates above this many rows is that estimate."""
    synchronous: str = "FULL"
    """SQLite ``PRAGMA synchronous``: FULL survives power loss; NORMAL survives process crashes only."""

    def db_path(self) -> Path:
        return Path(self.db)
