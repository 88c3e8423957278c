"""Killing the server (SIGKILL) or stopping it (SIGTERM) while it writes loses no acknowledged write
and leaves the database consistent; SIGTERM also lets requests in flight finish and exits cleanly.

A real `stadsdata serve` process takes concurrent single POSTs, deep inserts and
CreateObservations requests; it is killed at a random moment, restarted on the same
file, and every write that was answered 2xx must be there, exactly as sent.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import fixtures as f


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, db: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stadsdata.cli",
                "serve",
                "--db",
                str(db),
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            try:
                if self.request("GET", "/v1.1")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the server did not start")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = None if body is None else orjson.dumps(body)
            conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, orjson.loads(raw) if raw else None, dict(resp.getheaders())
        finally:
            conn.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> tuple[int, str]:
        """SIGTERM, as systemd or Kubernetes stop a service: the exit code and what it wrote to stderr."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        return code, self.proc.stderr.read().decode() if self.proc.stderr else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _writer(server: Served, kind: str, seed: int, acked: list[tuple[str, Any]], stop: threading.Event) -> None:
    """Write until the server dies; record what was acknowledged."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    i = 0
    while not stop.is_set():
        i += 1
        if kind == "single":
            value = seed * 1_000_000 + i
            body: Any = {"result": value, "phenomenonTime": "2026-11-22T10:00:00Z", "Datastream": {"@iot.id": 1}}
            path = "/v1.1/Observations"
        elif kind == "deep":
            name = f"well {seed}-{i}"
            body = f.thing(name, Locations=[f.location(name)])
            path = "/v1.1/Things"
        else:
            values = [seed * 1_000_000 + i * 1000 + k for k in range(rng.randint(5, 50))]
            body = [
                {
                    "Datastream": {"@iot.id": 1},
                    "components": ["phenomenonTime", "result"],
                    "dataArray": [["2026-11-22T11:00:00Z", v] for v in values],
                }
            ]
            path = "/v1.1/CreateObservations"
        try:
            conn.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException):
            return  # the server is gone; this write was never acknowledged
        assert resp.status == 201, answer
        if kind == "single":
            acked.append(("observation", (resp.getheader("Location"), body["result"])))
        elif kind == "deep":
            acked.append(("thing", (resp.getheader("Location"), body["name"])))
        else:
            links = orjson.loads(answer)
            assert not any(link.startswith("error") for link in links)
            acked.extend(("observation", (link, v)) for link, v in zip(links, values, strict=True))


@pytest.mark.parametrize(
    ("how", "kill_after"), [("kill", 0.3), ("kill", 0.9), ("kill", 1.7), ("term", 0.5), ("term", 1.5)]
)
def test_stopping_loses_no_acknowledged_write(tmp_path: Path, how: str, kill_after: float) -> None:
    db = tmp_path / "city.db"
    server = Served(db)
    status, _, _ = server.request(
        "POST",
        "/v1.1/Datastreams",
        f.datastream(
            Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
        ),
    )
    assert status == 201
    acked: list[tuple[str, Any]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(server, kind, seed, acked, stop))
        for seed, kind in enumerate(["single"] * 6 + ["deep"] * 2 + ["bulk"] * 2, start=1)
    ]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    if how == "kill":
        server.kill()
    else:
        code, stderr = server.terminate()
        # uvicorn finishes the requests in flight, runs the shutdown (the store drains its write
        # queue and closes), then exits through the signal it caught, as services conventionally do.
        assert code in (0, -signal.SIGTERM), stderr
        assert "Traceback" not in stderr, stderr
        # The last connection closed cleanly: SQLite checkpointed the WAL into the file and removed it.
        assert not (tmp_path / "city.db-wal").exists()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 10, "too few writes before the kill to tell anything"

    # The file itself is sound after the crash.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    server = Served(db)
    try:
        for what, (link, value) in acked:
            path = "/v1.1" + link.split("/v1.1", 1)[1]
            status, body, _ = server.request("GET", path)
            assert status == 200, f"acknowledged {link} is lost"
            assert body["result" if what == "observation" else "name"] == value
            if what == "thing":
                status, locations, _ = server.request("GET", path + "/Locations")
                assert [loc["name"] for loc in locations["value"]] == [value]
                status, hls, _ = server.request("GET", path + "/HistoricalLocations")
                assert len(hls["value"]) == 1
        # Nothing half-written: every Observation has its FeatureOfInterest, every Thing its Location.
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            no_foi = "SELECT count(*) FROM observations WHERE feature_of_interest_id IS NULL"
            assert conn.execute(no_foi).fetchone()[0] == 0
            no_location = (
                "SELECT count(*) FROM things t"
                " WHERE NOT EXISTS (SELECT 1 FROM thing_locations l WHERE l.thing_id = t.id)"
            )
            assert conn.execute(no_location).fetchone()[0] == 0
        # The Datastream's aggregate covers every stored Observation.
        _, ds, _ = server.request("GET", "/v1.1/Datastreams(1)")
        _, newest, _ = server.request("GET", "/v1.1/Datastreams(1)/Observations?$orderby=phenomenonTime%20desc&$top=1")
        assert ds["phenomenonTime"].split("/")[-1] == newest["value"][0]["phenomenonTime"]
        # And the server goes on taking writes.
        status, _, _ = server.request("POST", "/v1.1/Datastreams(1)/Observations", {"result": 1})
        assert status == 201
    finally:
        server.stop()
    assert os.path.exists(db)
