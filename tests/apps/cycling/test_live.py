"""The live chain: a real ``stadsdata serve`` with its embedded MQTT broker, the intersection loaded through the API,
the priority service subscribed to the positions, cyclists' phones publishing (MQTT QoS 1) or POSTing reports.

Riders move in real time (reports once a second with GNSS noise), so the test takes about 20 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from stadsdata.apps.cycling.eta import Fix
from stadsdata.apps.cycling.live import LiveService, build_controllers, discover, iso
from stadsdata.apps.cycling.platform import http_transport
from stadsdata.apps.cycling.requests import ServiceSettings
from stadsdata.apps.cycling.topology import Intersection
from stadsdata.cli import main as stadsdata_main
from tests.mqtt.conftest import Device, free_port

from .conftest import SCENARIO, fix_at

WINDOW = 10.0
SOUTH, NORTH_EAST = "south-cycle-0", "north-east-cycle-0"


@dataclass
class Platform:
    url: str
    mqtt_port: int
    positions: int
    requests: dict[str, int]
    service: LiveService

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/{path}", data, {"Content-Type": "application/json"}, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def messages(self, group: str) -> list[dict[str, Any]]:
        page = self.call("GET", f"Datastreams({self.requests[group]})/Observations?$orderby=id&$top=1000")
        return [o["result"] for o in page["value"]]

    def wait(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.2)


def report(fix: Fix) -> dict[str, Any]:
    """The Observation a phone sends: the report as its result, phenomenonTime its time."""
    body = {"station": fix.station, "time": iso(fix.time), "lon": fix.lon, "lat": fix.lat,
            "speed": fix.speed, "heading": fix.heading, "accuracy": 4.0}  # fmt: skip
    return {"phenomenonTime": iso(fix.time), "result": body}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("live")
    port, mqtt_port = free_port(), free_port()
    log = (tmp / "server.log").open("wb")
    cmd = [sys.executable, "-m", "stadsdata.cli", "serve", "--db", str(tmp / "db.sqlite"), "--port", str(port),
           "--mqtt-port", str(mqtt_port), "--synchronous", "NORMAL"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/v1.1"
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[None] | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server is not ready"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        load = ["cycling", "intersections", "load", str(SCENARIO / "intersection.json"), "--url", url]
        assert stadsdata_main(load) == 0
        assert stadsdata_main(load) == 0  # loading again changes nothing

        send = http_transport(url)
        sites = discover(send, ["enschede-hengelosestraat-alleeweg"], build_controllers("simulated", None),
                         ServiceSettings(window=WINDOW))  # fmt: skip
        service = LiveService(sites, send, f"mqtt://127.0.0.1:{mqtt_port}", retention=600.0, retention_every=1.0)
        ready = threading.Event()

        def serve() -> None:
            nonlocal loop, task
            loop = asyncio.new_event_loop()
            task = loop.create_task(service.run())
            ready.set()
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 10
        while not service.connected.is_set():
            assert time.monotonic() < deadline, "the service did not subscribe"
            time.sleep(0.05)
        site = sites[0]
        yield Platform(url, mqtt_port, site.positions, site.requests, service)
    finally:
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        if thread is not None:
            thread.join(10)
        proc.terminate()
        proc.wait(20)
        log.close()


def test_load_creates_each_datastream_once(platform: Platform) -> None:
    things = platform.call("GET", "Things?$expand=Datastreams")["value"]
    assert len(things) == 1
    names = sorted(d["name"] for d in things[0]["Datastreams"])
    assert names == [
        "Hengelosestraat x Alleeweg, Enschede: cyclist positions",
        "Hengelosestraat x Alleeweg, Enschede: priority requests, signal group 22",
        "Hengelosestraat x Alleeweg, Enschede: priority requests, signal group 28",
    ]
    assert sorted(platform.requests) == ["22", "28"]


def ride(
    publish: Callable[[dict[str, Any]], None],
    intersection: Intersection,
    lane: str,
    station: str,
    legs: list[tuple[float, int]],
    start: float,
    seed: int,
    turn_at: int | None = None,
) -> None:
    """Once a second a noisy report: ``legs`` are (speed, seconds) from ``start`` metres before the stop line;
    from report ``turn_at`` on, the cyclist rides off at right angles to the lane (turns away)."""
    rng = random.Random(seed)
    distance, k = start, 0
    for speed, seconds in legs:
        for _ in range(seconds):
            t = time.time()
            fix = fix_at(intersection, lane, distance, t, max(speed + rng.gauss(0, 0.4), 0.0), station, 3.0, rng)
            assert fix.heading is not None
            heading = (fix.heading + rng.gauss(0, 8)) % 360
            if turn_at is not None and k >= turn_at:
                heading = (heading + 90) % 360
            publish(report(Fix(fix.station, fix.time, fix.lon, fix.lat, fix.speed, heading)))
            distance -= speed
            k += 1
            time.sleep(max(0.0, t + 1.0 - time.time()))


def by_request(messages: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for m in messages:
        out.setdefault(m["requestId"], []).append(m)
    return out


def test_cyclists_over_mqtt_and_http(
    platform: Platform, intersection: Intersection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stadsdata.cycling.live")
    topic = f"v1.1/Datastreams({platform.positions})/Observations"
    phones = [Device(platform.mqtt_port, f"phone-{n}") for n in range(2)]
    stations = {"mqtt-pass": "3f9c2a71d04b", "mqtt-turn": "a7e1c0d29b35", "http": "5b2d8e41f7c6"}
    try:

        def post(body: dict[str, Any]) -> None:
            platform.call("POST", f"Datastreams({platform.positions})/Observations", body)

        riders = [
            # Through the south approach: 55 m at 5 m/s, speeding up to 7.5 m/s (the ETA moves: an update), over
            # the stop line.
            threading.Thread(
                target=ride,
                args=(
                    lambda b: phones[0].publish(topic, b),
                    intersection,
                    SOUTH,
                    stations["mqtt-pass"],
                    [(5.0, 4), (7.5, 7)],
                    55.0,
                    1,
                ),
            ),  # fmt: skip
            # On the north-east approach, then turning off the cycle path.
            threading.Thread(
                target=ride,
                args=(
                    lambda b: phones[1].publish(topic, b),
                    intersection,
                    NORTH_EAST,
                    stations["mqtt-turn"],
                    [(5.0, 6)],
                    45.0,
                    2,
                    3,
                ),
            ),  # fmt: skip
        ]
        for r in riders:
            r.start()
        time.sleep(6.5)
        # A phone that sends over HTTP, on the north-east approach after the first cyclist left it; then silent.
        ride(post, intersection, NORTH_EAST, stations["http"], [(5.0, 5)], 48.0, 3)
        for r in riders:
            r.join(30)

        def settled() -> bool:
            south = by_request(platform.messages("22"))
            north = by_request(platform.messages("28"))
            return (
                any(m["message"] == "SSM" and m["status"] == "served" for ms in south.values() for m in ms)
                and len(north) == 2
                and all(ms[-1]["message"] == "SSM" and ms[-1]["status"] == "cancelled" for ms in north.values())
            )

        platform.wait(settled, timeout=15)
    finally:
        for p in phones:
            p.close()

    # The cyclist who rode through: one request, granted, updated with a new ETA, served when over the line.
    south = by_request(platform.messages("22"))
    assert len(south) == 1
    (passing,) = south.values()
    srms = [m for m in passing if m["message"] == "SRM"]
    assert srms[0]["requestType"] == "priorityRequest" and srms[0]["sequenceNumber"] == 0
    assert srms[0]["signalGroup"] == "22" and srms[0]["inBoundLane"] == {"approach": "south", "lane": SOUTH}
    assert 0 < srms[0]["secondsToArrival"] <= WINDOW
    assert any(m["requestType"] == "priorityRequestUpdate" and m["sequenceNumber"] >= 1 for m in srms)
    answers = [m for m in passing if m["message"] == "SSM"]
    assert answers[0]["status"] == "granted" and answers[0]["expectedGreen"] is not None
    # The main road had rested in green long enough: the cycle green is planned for before the arrival.
    assert datetime.fromisoformat(answers[0]["expectedGreen"]) <= datetime.fromisoformat(answers[0]["eta"])
    assert answers[-1]["status"] == "served" and answers[-1]["reason"] == "passed the stop line"
    # The ETA of the last update is close to when the cyclist actually reached the line (about 8.7 s after
    # the first report); each ETA is an ISO instant.
    assert srms[-1]["eta"].endswith("Z")

    # North-east: the first cyclist turned away, the HTTP one went silent; both cancelled.
    turned, silent = (ms for _, ms in sorted(by_request(platform.messages("28")).items()))
    assert turned[0]["message"] == "SRM" and turned[-1]["reason"] == "turned away"
    assert silent[0]["message"] == "SRM" and silent[-1]["reason"] == "no position reports"

    # Nothing in the platform's requests, nor in the service's log, names a cyclist.
    everything = json.dumps(platform.messages("22") + platform.messages("28")) + caplog.text
    assert not any(s in everything for s in stations.values())
    # The log names the request by its number (numbers follow the order in which the riders came in range).
    assert f"request {srms[0]['requestId']} seq 0, signal group 22" in caplog.text


def test_old_positions_are_deleted(platform: Platform) -> None:
    now = time.time()
    far = {"station": "c0ffee00d15c", "lon": 6.90, "lat": 52.20, "speed": 4.0, "heading": 10.0}  # not near a lane
    for t in (now - 1200, now):  # 20 minutes old, and new
        body = {"phenomenonTime": iso(t), "result": {**far, "time": iso(t)}}
        platform.call("POST", f"Datastreams({platform.positions})/Observations", body)

    def ids() -> set[int]:
        flt = urllib.parse.quote(f"phenomenonTime lt {iso(now - 600)}")
        page = platform.call("GET", f"Datastreams({platform.positions})/Observations?$filter={flt}&$select=id")
        return {o["@iot.id"] for o in page["value"]}

    platform.wait(lambda: not ids(), timeout=5)
    recent = platform.call("GET", f"Datastreams({platform.positions})/Observations?$select=id,phenomenonTime&$top=1000")
    assert recent["value"], "recent reports are kept"
    assert platform.service.deleted >= 1


def test_the_serve_command(platform: Platform) -> None:
    """``stadsdata cycling serve`` finds the intersection, says what it serves, and stops cleanly on SIGTERM."""
    mqtt = f"mqtt://127.0.0.1:{platform.mqtt_port}"
    cmd = [sys.executable, "-m", "stadsdata.cli", "cycling", "serve", "--url", platform.url, "--mqtt", mqtt]
    missing = subprocess.run([*cmd, "--intersection", "nowhere"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no intersection named nowhere" in missing.stderr
    bad = subprocess.run([*cmd, "--window", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--window" in bad.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        topic = f"v1.1/Datastreams({platform.positions})/Observations"
        assert line.startswith(f"enschede-hengelosestraat-alleeweg: positions on {topic}")
        assert "simulated controller" in line
        deadline = time.monotonic() + 20
        seen = ""
        assert proc.stderr is not None
        while "subscribed to the positions of 1 intersection" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += proc.stderr.readline()
    finally:
        proc.terminate()
        code = proc.wait(20)
    assert code == 0
