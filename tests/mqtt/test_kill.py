"""Kill the server (SIGKILL) during a stream of QoS 1 Observations, start it again, and count.

Every message the device saw acknowledged is stored exactly once: nothing lost (a PUBACK is sent
only after the commit) and nothing twice (the device sends what was not acknowledged again, with
the DUP flag, and a redelivery of a committed message creates nothing). With mosquitto, the broker
acknowledges the device and keeps the messages for the server's persistent session while it is
down; the server acknowledges them to mosquitto after its commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stadsdata.settings import Settings
from tests import fixtures as f
from tests.mqtt.conftest import free_port

COUNT = 600
KILL_AFTER = 150  # acknowledged messages before the kill


class ServerProcess:
    """``stadsdata serve`` as a process of its own, so that it can be killed."""

    def __init__(self, db: str, mqtt_args: list[str], log: Path) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "stadsdata.cli", "serve", "--db", db, "--port", str(self.port), *mqtt_args]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the server is not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1.1/{path}", data, {"Content-Type": "application/json"}, method=method
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def _results(server: ServerProcess) -> list[int]:
    out: list[int] = []
    path = "Datastreams(1)/Observations?$select=result&$orderby=id&$top=10000"
    while path:
        page = server.request("GET", path)
        out += [o["result"] for o in page["value"]]
        path = page.get("@iot.nextLink", "").split("/v1.1/", 1)[-1] if "@iot.nextLink" in page else ""
    return out


def test_every_acknowledged_message_is_stored_exactly_once_across_a_kill(
    settings: Settings, broker_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if broker_kind == "embedded":
        device_port = free_port()
        mqtt_args = ["--mqtt-port", str(device_port)]
    else:
        mosquitto = request.getfixturevalue("mosquitto")
        device_port = mosquitto.port
        mqtt_args = ["--mqtt-url", mosquitto.url, "--mqtt-port", "0"]
    server = ServerProcess(settings.db, mqtt_args, tmp_path / "server.log")
    server.start()
    try:
        server.request("POST", "Things", f.full_thing())  # Datastream 1

        acked_mids: set[int] = set()  # packet ids are not reused within COUNT messages
        by_mid: dict[int, int] = {}
        lock = threading.Condition()

        def on_publish(client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
            with lock:
                acked_mids.add(mid)
                lock.notify_all()

        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="well-12", clean_session=False)
        device.on_publish = on_publish
        device.reconnect_delay_set(1, 1)
        device.connect("127.0.0.1", device_port)
        device.loop_start()

        def wait_acked(count: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            with lock:
                while len(acked_mids) < count:
                    left = deadline - time.monotonic()
                    assert left > 0, f"{len(acked_mids)} of {count} messages acknowledged"
                    lock.wait(left)

        try:
            for i in range(COUNT):
                # Not under the lock: paho may be in on_publish, waiting for it, while publish waits for paho.
                info = device.publish("v1.1/Datastreams(1)/Observations", json.dumps({"result": i}), qos=1)
                by_mid[info.mid] = i
                if i == KILL_AFTER + 100:
                    wait_acked(KILL_AFTER, 30)
                    server.kill()  # mid-stream: messages in flight, some committed and not yet acknowledged
                    with lock:
                        acked_before_kill = {by_mid[m] for m in acked_mids}
                    server.start()
            wait_acked(COUNT, 90)
        finally:
            device.disconnect()
            device.loop_stop()

        assert len(acked_before_kill) >= KILL_AFTER
        acked = {by_mid[m] for m in acked_mids}
        assert acked_before_kill <= acked
        deadline = time.monotonic() + 30
        results = _results(server)
        while len(results) < COUNT and time.monotonic() < deadline:  # the last commits may still be published
            time.sleep(0.1)
            results = _results(server)
        counts: dict[int, int] = {}
        for r in results:
            counts[r] = counts.get(r, 0) + 1
        lost = sorted(i for i in acked if i not in counts)
        twice = sorted(i for i, n in counts.items() if n > 1)
        assert not lost, f"acknowledged but not stored: {lost}"
        assert not twice, f"stored more than once: {twice}"
        assert sorted(counts) == list(range(COUNT))
    finally:
        server.stop()
