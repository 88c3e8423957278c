"""Access control over MQTT (embedded broker): the token is the password; notifications reach only subscribers who
may see the entity; creates by publishing need the writer role, like POST."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stadsdata.settings import Settings
from tests.access.conftest import CALLERS, World, build_world, can_change, can_see
from tests.mqtt.conftest import free_port, published

WATCHERS = [w for w in CALLERS if w.name in ("anonymous", "resident-groundwater", "reader-groundwater",
                                             "personal-reader-groundwater", "admin-everywhere")]  # fmt: skip
ADMIN = next(w for w in CALLERS if w.name == "admin-everywhere")


class Client:
    """A paho client that connects with a token as its password (or anonymously) and records what it receives."""

    def __init__(self, port: int, name: str, token: str | None) -> None:
        self.received: list[tuple[str, Any]] = []
        self.lock = threading.Condition()
        self.connected = threading.Event()
        self.code: Any = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        if token is not None:
            self.client.username_pw_set("token", token)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: Any, properties: Any = None) -> None:
        self.code = code
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((message.topic, json.loads(message.payload)))
            self.lock.notify_all()

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: Any) -> None:
        info = self.client.publish(topic, json.dumps(payload).encode(), qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_world(
    world_settings: Callable[[str], Settings], request: pytest.FixtureRequest
) -> Iterator[tuple[World, int]]:
    port = free_port()
    base = world_settings("m" + str(abs(hash(request.node.nodeid)) % 10**8))
    for w in build_world(dataclasses.replace(base, mqtt_port=port)):
        yield w, port


def _connect(world: World, port: int, who: Any) -> Client:
    c = Client(port, f"c-{who.name}", world.tokens.get(who.name))
    assert c.connected.wait(5) and not c.code.is_failure, f"{who.name} could not connect: {c.code}"
    return c


def test_a_bad_token_cannot_connect(mqtt_world: tuple[World, int]) -> None:
    world, port = mqtt_world
    c = Client(port, "intruder", "sdt_not-a-token")
    try:
        assert c.connected.wait(5)
        assert c.code.is_failure  # CONNACK: not authorized
    finally:
        c.close()


def test_notifications_reach_only_who_may_see(mqtt_world: tuple[World, int]) -> None:
    world, port = mqtt_world
    clients = {w.name: _connect(world, port, w) for w in WATCHERS}
    try:
        for c in clients.values():
            c.subscribe("v1.1/Observations", "v1.1/Things/#")
        created: dict[int, Any] = {}
        for site in world.sites:
            ds = site.ids["Datastreams"][0]
            r = world.client.post(
                f"/v1.1/Datastreams({ds})/Observations", json={"result": 1}, headers=world.headers(ADMIN)
            )
            assert r.status_code == 201
            created[r.json()["@iot.id"]] = site
        published(world.client)
        for who in WATCHERS:
            want = {i for i, s in created.items() if can_see(who, s.project, s.visibility)}
            c = clients[who.name]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with c.lock:
                    got = {doc["@iot.id"] for topic, doc in c.received if topic == "v1.1/Observations"}
                if got >= want:
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # anything more that would arrive
            with c.lock:
                got = {doc["@iot.id"] for topic, doc in c.received if topic == "v1.1/Observations"}
            assert got == want, f"{who.name} got {sorted(got)}, expected {sorted(want)}"
    finally:
        for c in clients.values():
            c.close()


def test_creating_by_publishing_needs_the_writer_role(mqtt_world: tuple[World, int]) -> None:
    world, port = mqtt_world
    service = world.client.app.state.service  # type: ignore[attr-defined]
    for who in (w for w in CALLERS if w.name in ("anonymous", "writer-groundwater", "reader-everywhere")):
        c = _connect(world, port, who)
        try:
            for site in world.sites:
                if site.inner:
                    continue
                ds = site.ids["Datastreams"][0]
                before = len(world.get(ADMIN, f"Datastreams({ds})/Observations").json()["value"])
                c.publish(f"v1.1/Datastreams({ds})/Observations", {"result": 5})
                after = len(world.get(ADMIN, f"Datastreams({ds})/Observations").json()["value"])
                want = can_change(who, site.project, site.visibility) and who.token
                assert (after == before + 1) == want, f"{who.name} into {site.project} {site.visibility}"
        finally:
            c.close()
    letters = world.client.portal.call(service.dead_letters)  # type: ignore[union-attr]
    # Refused creates leave nothing behind; a writer's publish to a Datastream it may not see is kept like one to a
    # missing Datastream (an operator may want to know about it), and says no more than that.
    assert {x.reason for x in letters} <= {f"nothing found at Datastreams({i})" for i in range(1, 20)}
    assert letters and all(x.topic and "(" in x.topic for x in letters)
