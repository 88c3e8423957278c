"""What arrives over MQTT and is stored: Observations published to SensorThings topics, and the
payloads of the ingestion subscriptions (LoRaWAN integrations, mapped topics).

``Intake.receive`` returns once what the message carries is committed (or kept as a dead letter),
and only then may the message be acknowledged (PUBACK). It raises only when the store fails; the
message is then not acknowledged, and the client sends it again on its next connection.

Redelivery. An MQTT sender that gets no PUBACK sends the message again with the DUP flag and the
same packet identifier, on the same session. A create is therefore committed together with a claim
of (session, packet identifier, digest of topic and payload), the same claims ``Service.ingest``
keeps: a redelivery (DUP=1) whose claim exists was committed before, and is acknowledged without
creating anything. A first delivery (DUP=0) is always created: a sender reuses a packet identifier
once the previous message with it is acknowledged, so an earlier claim says nothing about it. The
digest keeps a redelivered message from being taken for an earlier, acknowledged one that reused
its identifier; only a byte-identical earlier message with the same identifier, whose own first
delivery then never reached the server, would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from stadsdata.access import OPEN, Caller, Role
from stadsdata.errors import Forbidden, STAError, Unauthorized
from stadsdata.ingest.base import DecodeError
from stadsdata.ingest.connectors import Subscription
from stadsdata.model.entities import Registry
from stadsdata.mqtt.topics import TopicError, is_sta_topic, parse_create_topic
from stadsdata.service import Service

log = logging.getLogger(__name__)

CREATE_SOURCE = "sta-mqtt"
"""The source of dead letters of Observations published to SensorThings topics that could not be created."""
MQTT_PATH = "mqtt"


@dataclass(frozen=True)
class Inbound:
    """One PUBLISH as received: ``session`` identifies the sender's MQTT session (its client id)."""

    topic: str
    payload: bytes
    qos: int
    session: str
    packet_id: int | None
    dup: bool
    caller: Caller = OPEN
    """Who sent it (docs/access.md): the identity of the MQTT session's token; OPEN with access control off."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    if topic_filter == topic:
        return True
    parts = topic.split("/")
    for i, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return not (i == 0 and topic.startswith("$"))
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
        if level == "+" and i == 0 and topic.startswith("$"):
            return False
    return len(topic_filter.split("/")) == len(parts)


class Intake:
    """Creates and ingests what clients publish; ``created`` is called with the count of Observations created."""

    def __init__(
        self,
        service: Service,
        registry: Registry,
        subscriptions: list[Subscription],
        created: Callable[[int], None] | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self.subscriptions = subscriptions
        self.created = created
        self.received = 0
        self.busy = 0  # messages being stored now
        self.duplicates = 0
        self.refused = 0
        self.dead_letters = 0

    def wants(self, topic: str) -> bool:
        """True when a message on ``topic`` is the server's to store (a SensorThings or ingestion topic)."""
        return is_sta_topic(topic) or self.ingestion(topic) is not None

    def wants_routed(self, topic: str) -> bool:
        """True when a stored message also goes to the broker's subscribers as it is (ingestion topics; what
        is published to SensorThings topics reaches them as the created entity instead)."""
        return not is_sta_topic(topic)

    def ingestion(self, topic: str) -> Subscription | None:
        for sub in self.subscriptions:
            if topic_matches(sub.topic_filter, topic):
                return sub
        return None

    async def receive(self, msg: Inbound) -> None:
        self.received += 1
        self.busy += 1
        try:
            await self._receive(msg)
        finally:
            self.busy -= 1

    async def drained(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no message is being stored."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _receive(self, msg: Inbound) -> None:
        if is_sta_topic(msg.topic):
            await self._create(msg)
            return
        sub = self.ingestion(msg.topic)
        if sub is None:
            return
        try:
            message = sub.decode(msg.payload, msg.topic)
        except DecodeError as exc:
            await self._dead_letter(sub.source, str(exc), msg)
            return
        delivery = await self.service.ingest(message)
        if delivery.duplicate:
            self.duplicates += 1

    async def _create(self, msg: Inbound) -> None:
        if msg.caller.restricted and not msg.caller.identity.projects(Role.WRITER):
            self.refused += 1  # no dead letter: whoever may write nothing must not be able to fill the database
            log.warning(
                "MQTT message on %s refused: %s may not create anything", msg.topic, msg.caller.identity.describe()
            )
            return
        try:
            path = parse_create_topic(self.registry, msg.topic)
        except TopicError as exc:
            await self._dead_letter(CREATE_SOURCE, str(exc), msg)
            return
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError as exc:
            await self._dead_letter(CREATE_SOURCE, f"the payload is not JSON: {exc.msg} at position {exc.pos}", msg)
            return
        try:
            if msg.qos == 0 or msg.packet_id is None:
                await self.service.create(path, body, msg.caller)
            else:
                session = hashlib.sha256(msg.session.encode()).hexdigest()[:16]
                digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()[:24]
                created = await self.service.create_claimed(
                    path, body, f"mqtt:{session}", f"{msg.packet_id}:{digest}", redelivered=msg.dup, caller=msg.caller
                )
                if created is None:
                    self.duplicates += 1
                    return
        except (Unauthorized, Forbidden) as exc:
            # Not kept as a dead letter: whoever may not write must not be able to fill the database either.
            self.refused += 1
            log.warning("MQTT message on %s refused: %s", msg.topic, exc.message)
            return
        except STAError as exc:
            await self._dead_letter(CREATE_SOURCE, exc.message, msg)
            return
        if self.created is not None:
            self.created(1)

    async def _dead_letter(self, source: str, reason: str, msg: Inbound) -> None:
        self.dead_letters += 1
        log.warning("MQTT message on %s kept as a dead letter: %s", msg.topic, reason)
        await self.service.dead_letter(source, MQTT_PATH, reason, msg.payload, msg.topic)
