"""Browser tests: ``stadsdata demo`` in a subprocess and headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stadsdata.web.browser import CHROMEDRIVER, CHROMIUM, DemoProcess, chromium, demo


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the test extra installs it)"
    if not any(Path(p).exists() for p in CHROMIUM) or not (
        shutil.which("chromedriver") or any(Path(p).exists() for p in CHROMEDRIVER)
    ):
        return "chromium and chromium-driver are not installed (scripts/test.sh installs them)"
    return None


@pytest.fixture(scope="session")
def running_demo() -> Iterator[DemoProcess]:
    """The demo with two days of history and a live clock at 60 × real time (a 5-minute reading every 5 s)."""
    with demo(days=2, speed=60, seed=7) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def api(running: DemoProcess, path: str) -> Any:
    with urllib.request.urlopen(running.url + path.replace(" ", "%20")) as r:
        return json.load(r)
