"""Driving the dashboard in a real browser: a ``stadsdata demo`` subprocess and headless Chromium.

Used by the browser tests (tests/web) and by ``python -m stadsdata.web.screenshots``. Needs the
``test`` extra (Selenium) and Debian's ``chromium`` and ``chromium-driver`` packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class DemoProcess:
    """A running ``stadsdata demo``: its URL and what it printed so far."""

    url: str
    directory: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


@contextmanager
def demo(
    days: float = 2,
    speed: float = 1,
    seed: int = 7,
    directory: str | os.PathLike[str] | None = None,
    timeout: float = 120,
) -> Iterator[DemoProcess]:
    """``stadsdata demo`` on a free port in ``directory`` (default: a temporary one), until the block ends."""
    temporary = None
    if directory is None:
        temporary = tempfile.mkdtemp(prefix="stadsdata-demo-")
        directory = temporary
    port = free_port()
    command = [sys.executable, "-m", "stadsdata.cli", "demo", "--dir", str(directory), "--port", str(port)]
    command += ["--days", str(days), "--speed", str(speed), "--seed", str(seed), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    running = DemoProcess(f"http://127.0.0.1:{port}", Path(directory), process)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            running.output.append(line.rstrip("\n"))
            if line.startswith("Dashboard: "):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(timeout) or process.poll() is not None:
            raise RuntimeError("stadsdata demo did not start:\n" + "\n".join(running.output))
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def chromium(width: int = 1280, height: int = 900) -> WebDriver:
    """Headless Chromium through Selenium, with the system's chromium and chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = next((p for p in CHROMIUM if Path(p).exists()), None)
    driver_path = next((p for p in CHROMEDRIVER if Path(p).exists()), None) or shutil.which("chromedriver")
    if binary is None or driver_path is None:
        raise RuntimeError("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-GB",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def wait_for(condition: Callable[[], object], timeout: float = 30, poll: float = 0.25) -> None:
    """Wait until ``condition()`` is truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as e:  # the page is still loading: try again
            last = e
        time.sleep(poll)
    raise AssertionError(f"not true within {timeout} s: {getattr(condition, '__doc__', None) or condition}") from last
