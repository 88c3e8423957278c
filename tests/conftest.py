"""Shared fixtures: a fresh store per test, the ASGI app over an in-process HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.settings import Settings

BASE = "http://testserver/v1.1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=str(tmp_path / "test.db"), synchronous="NORMAL")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c
