"""A real stadsdata server (uvicorn in a thread, on a free port) for tests that talk to it over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from stadsdata.api.app import create_app
from stadsdata.settings import Settings
from stadsdata.web.browser import free_port

SECRET = "a-test-secret-of-some-length"


@contextmanager
def server(db: Path, mapping: str | None) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        db=str(db), port=port, mqtt_port=0, log_level="WARNING", webhook_secret=SECRET, ingest_mapping=mapping
    )
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(30)
