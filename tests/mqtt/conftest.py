"""Real brokers for the MQTT tests: the embedded amqtt broker started by the app, and mosquitto started here.

mosquitto runs on 127.0.0.1 on a free port with a generated configuration (not as a system
service); ``.ci/run`` installs it. Clients are paho-mqtt (a real client, as devices use) and, where
a test needs to set the DUP flag itself, raw MQTT 3.1.1 packets over a socket.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.settings import Settings

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class Mosquitto:
    """A mosquitto process on a free port of 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # No limit on messages queued for a disconnected persistent session: the server's session keeps
        # everything published while it is down (the kill test depends on it, and so does production).
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n"
        )
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stderr=self.log.open("wb"))
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install -y mosquitto; .ci/run does)")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


BROKERS = ["embedded", "mosquitto"]


@pytest.fixture(params=BROKERS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mqtt_settings(settings: Settings, broker_kind: str, request: pytest.FixtureRequest) -> tuple[Settings, int]:
    """The test store's settings with MQTT on: (settings, the port clients connect to)."""
    if broker_kind == "embedded":
        port = free_port()
        return dataclasses.replace(settings, mqtt_port=port), port
    broker: Mosquitto = request.getfixturevalue("mosquitto")
    return dataclasses.replace(settings, mqtt_url=broker.url), broker.port


@pytest.fixture
def mqtt_client(mqtt_settings: tuple[Settings, int]) -> Iterator[tuple[TestClient, int]]:
    """The app, serving with MQTT on (its lifespan starts the broker or connects to mosquitto)."""
    settings, port = mqtt_settings
    with TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c, port


class Device:
    """A paho-mqtt client that records what it receives; ``publish`` returns once the broker acknowledged."""

    def __init__(self, port: int, client_id: str, clean: bool = True) -> None:
        self.received: list[tuple[str, Any]] = []
        self.lock = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(message.payload)
        except ValueError:
            doc = message.payload
        with self.lock:
            self.received.append((message.topic, doc))
            self.lock.notify_all()

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, data, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        """The first ``count`` messages received (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"received {len(self.received)} of {count} messages: {self.received}"
                self.lock.wait(left)
            return list(self.received)

    def quiet(self, seconds: float = 0.3) -> list[tuple[str, Any]]:
        """Everything received after ``seconds`` more."""
        time.sleep(seconds)
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def published(client: TestClient) -> None:
    """Wait until the app has published the notifications of every write so far."""
    mqtt = client.app.state.mqtt  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(mqtt.publisher.idle)


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    made: list[Device] = []
    yield made
    for d in made:
        d.close()


# -- raw MQTT 3.1.1, for the DUP flag ------------------------------------------------------------------


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    data = s.encode()
    return len(data).to_bytes(2, "big") + data


class RawClient:
    """Just enough MQTT 3.1.1 to send a PUBLISH with the DUP flag and packet id of a test's choosing."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        variable = _string("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
        self._send(0x10, variable + _string(client_id))
        kind, body = self.read()
        assert kind == 0x20 and body[1] == 0, f"CONNACK refused: {body!r}"

    def _send(self, first: int, body: bytes) -> None:
        self.sock.sendall(bytes([first]) + _remaining(len(body)) + body)

    def read(self) -> tuple[int, bytes]:
        first = self._exactly(1)[0]
        n, shift = 0, 0
        while True:
            byte = self._exactly(1)[0]
            n += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first & 0xF0, self._exactly(n)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def publish(self, topic: str, payload: bytes, packet_id: int, dup: bool = False) -> None:
        """PUBLISH with QoS 1; returns when the PUBACK of ``packet_id`` arrived."""
        self._send(0x32 | (0x08 if dup else 0), _string(topic) + packet_id.to_bytes(2, "big") + payload)
        kind, body = self.read()
        assert kind == 0x40 and int.from_bytes(body[:2], "big") == packet_id, (kind, body)

    def close(self) -> None:
        self._send(0xE0, b"")
        self.sock.close()
