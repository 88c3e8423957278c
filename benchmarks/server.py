"""Start `stadsdata serve` as its own process for a benchmark, on a free port of 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``with Server(db) as s:`` serves ``db`` on ``s.port`` until the block ends."""

    def __init__(self, db: Path | str, *extra: str) -> None:
        self.db = db
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "stadsdata.cli",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            *self.extra,
        ]
        if not any(arg in ("--mqtt-port", "--mqtt-url") for arg in self.extra):
            cmd += ["--mqtt-port", "0"]  # no embedded broker on 1883 unless the benchmark is about MQTT
        # The server logs a line per request, as it does in production: to a file, not a pipe
        # that nobody reads while it runs (a full pipe would stop the server).
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"the server stopped: {self.log.read().decode(errors='replace')[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/v1.1")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not start within 60 s")

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
