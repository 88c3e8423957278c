"""The MQTT broker the server works with: embedded (amqtt), or an external one it is a client of (aiomqtt).

Both do the same four things behind ``Broker``: hand every message the server stores to
``Intake.receive`` and acknowledge it only once that returned (committed), publish
notifications, say which topic filters clients are subscribed to (where that can be seen),
and say whether they are working (readiness).

Embedded (``EmbeddedBroker``): an amqtt broker on ``host:mqtt_port``. amqtt answers a QoS 1
PUBLISH in ``ProtocolHandler._handle_qos1_message_flow``: it queues the message for routing and
sends the PUBACK at once. The per-connection handler here (``_Handler``) overrides
``handle_publish``, which amqtt runs as a task of its own for every PUBLISH it reads, so that a
message on a topic the server stores is first given to the intake and awaited, and only then
acknowledged (PUBACK for QoS 1, PUBREC for QoS 2); PUBACKs go out in the order the PUBLISHes came
in (MQTT-4.6.0-2) while the creates of one connection commit together (group commit). Messages on
SensorThings topics are not routed to subscribers as they are: subscribers get the created
entity, as GET shows it, from the publisher. Messages on ingestion topics are routed after the
commit. amqtt's plugin events cannot do this: they are fired without being awaited. The broker
class is a subclass that makes its connections use ``_Handler`` and tells the publisher when
subscriptions change; both override amqtt methods, which is why amqtt is pinned below 0.13.

External (``ExternalBroker``): an MQTT v5 client with a fixed client id and a session that
outlives disconnections (clean start off, session expiry of a week), so the broker keeps what
arrives while the server is down. It subscribes with QoS 1 and the No Local option (it never
receives its own notifications, which go to the same topic names as creates) to
``v1.1/Observations``, ``v1.1/+/Observations`` and the ingestion topic filters, and acknowledges
by hand after the commit (paho-mqtt's manual acknowledgement; aiomqtt 2.5 does not expose it, nor
the DUP flag, so the paho client underneath is used for those two).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as paho
from amqtt.broker import Broker as AmqttBroker
from amqtt.errors import BrokerError
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import IncomingApplicationMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from stadsdata.access import Access, Caller
from stadsdata.access.identity import ANONYMOUS
from stadsdata.errors import Unauthorized
from stadsdata.mqtt.intake import Inbound, Intake

log = logging.getLogger(__name__)

# amqtt logs client ids and addresses, and tracebacks for failures reported here in a line of our own:
# its log stays out of the server's log.
_amqtt_log = logging.getLogger("amqtt")
_amqtt_log.addHandler(logging.NullHandler())
_amqtt_log.propagate = False

SESSION_EXPIRY = 7 * 24 * 3600
"""Seconds an external broker keeps the server's session (and the messages for it) while it is away."""
CREATE_FILTERS = ("v1.1/Observations", "v1.1/+/Observations")
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
DRAIN_SECONDS = 10.0
"""At shutdown, how long messages being stored may take to commit and be acknowledged."""


class Broker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, audience: frozenset[Caller] | None = None) -> None:
        """Publish a notification (QoS 1, not retained); with ``audience``, only to subscribers who are one of
        those callers (access control)."""
        ...

    def callers(self) -> set[Caller]:
        """With access control on, the callers of the sessions that subscribe (the publisher decides what each of
        them may see)."""
        ...

    def problem(self) -> str | None:
        """Why the broker does not work, or None (readiness)."""
        ...


SubscriptionsChanged = Callable[[Iterable[str] | None], None]


# -- embedded ------------------------------------------------------------------------------------


class _Handler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's handler of one client connection, with PUBLISHes to the server's topics stored before they are
    acknowledged."""

    intake: Intake
    callers: dict[str, Caller]
    default_caller: Caller

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ack_tail: asyncio.Future[None] | None = None

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        topic, data = publish_packet.topic_name, publish_packet.data
        if topic is None or data is None or self.session is None or not self.intake.wants(topic):
            await super().handle_publish(publish_packet)
            return
        qos = publish_packet.qos or 0
        header = publish_packet.variable_header
        packet_id = header.packet_id if header is not None and qos else None
        previous, mine = self._ack_tail, asyncio.get_running_loop().create_future()
        self._ack_tail = mine
        try:
            caller = self.callers.get(self.session.client_id, self.default_caller)
            msg = Inbound(topic, bytes(data), qos, self.session.client_id, packet_id, publish_packet.dup_flag, caller)
            try:
                await self.intake.receive(msg)
            except Exception:  # noqa: BLE001 - not stored: not acknowledged; the client sends it again
                log.exception("an MQTT message on %s could not be stored; it is not acknowledged", topic)
                return
            if previous is not None:
                await previous
            if qos == QOS_1 and packet_id is not None:
                await self._send_packet(PubackPacket.build(packet_id))
            elif qos == QOS_2 and packet_id is not None:
                await self._exactly_once(packet_id)
        finally:
            if not mine.done():
                mine.set_result(None)
        if not self.intake.wants_routed(topic):
            return
        # An ingestion topic: routed to its subscribers like any other message, now that it is stored.
        message = IncomingApplicationMessage(packet_id, topic, qos, data, publish_packet.retain_flag)
        message.publish_packet = publish_packet
        await self.session.delivered_message_queue.put(message)

    async def _exactly_once(self, packet_id: int) -> None:
        """The rest of the QoS 2 flow of a stored message: PUBREC, wait for PUBREL, PUBCOMP."""
        waiter: asyncio.Future[PubrelPacket] = asyncio.get_running_loop().create_future()
        self._pubrel_waiters[packet_id] = waiter
        try:
            await self._send_packet(PubrecPacket.build(packet_id))
            await waiter
        finally:
            self._pubrel_waiters.pop(packet_id, None)
        await self._send_packet(PubcompPacket.build(packet_id))


class _AmqttBroker(AmqttBroker):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's broker with ``_Handler`` connections and subscription changes reported."""

    def __init__(self, config: dict[str, Any], intake: Intake, changed: SubscriptionsChanged, access: Access) -> None:
        super().__init__(config, plugin_namespace="stadsdata.mqtt")
        self.intake = intake
        self.changed = changed
        self.access = access
        self.callers: dict[str, Caller] = {}
        """The caller of each client id, from the token it connected with (access control)."""

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[BrokerProtocolHandler, Any]:
        _, session = await super()._initialize_client_session(*args, **kwargs)
        # amqtt made a plain handler that is not attached to the connection yet: use ours instead.
        handler = _Handler(self.plugins_manager, loop=self._loop)
        handler.intake = self.intake
        handler.callers = self.callers
        handler.default_caller = self.access.caller(ANONYMOUS)
        return handler, session

    async def _authenticate(self, session: Any, listener: Any) -> bool:
        """With access control on, the password is the token (an API token or an OpenID Connect access token; the
        user name is not used); without one, the client is anonymous if anonymous access is allowed."""
        if not self.access.enabled:
            return bool(await super()._authenticate(session, listener))
        password = session.password
        if isinstance(password, bytes | bytearray):
            password = bytes(password).decode("utf-8", "replace")
        try:
            caller = await self.access.authenticate(f"Bearer {password}" if password else None)
        except Unauthorized as exc:
            log.info("MQTT connection of a client refused: %s", exc.message)
            return False
        self.callers[session.client_id] = caller
        return True

    def _report(self) -> None:
        self.changed([f for f, subscribers in self._subscriptions.items() if subscribers])

    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        code: int = await super().add_subscription(subscription, session)
        self._report()
        return code

    def _del_subscription(self, a_filter: str, session: Any) -> int:
        deleted: int = super()._del_subscription(a_filter, session)
        self._report()
        return deleted

    async def _del_all_subscriptions(self, session: Any) -> None:
        await super()._del_all_subscriptions(session)
        self._report()


class EmbeddedBroker:
    def __init__(self, host: str, port: int, intake: Intake, changed: SubscriptionsChanged, access: Access) -> None:
        self.host = host
        self.port = port
        self.intake = intake
        self.changed = changed
        self.access = access
        self._broker: _AmqttBroker | None = None
        self._failure: str | None = None

    async def start(self) -> None:
        """Listen on ``host:port``. A broker that cannot listen (the port is taken) does not stop the server:
        the failure is logged, and readiness reports it until the server is restarted."""
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self.changed([])
        broker = _AmqttBroker(config, self.intake, self.changed, self.access)
        try:
            await broker.start()
        except (BrokerError, OSError) as exc:
            cause = exc.__cause__ or exc
            self._failure = f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: {cause}"
            log.error("%s", self._failure)
            return
        self._broker = broker

    async def close(self) -> None:
        """Stop accepting connections, let the messages being stored commit and be acknowledged, then stop."""
        if self._broker is not None:
            for server in self._broker._servers.values():
                with contextlib.suppress(Exception):
                    await server.close_instance()
            await self.intake.drained(DRAIN_SECONDS)
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None

    async def publish(self, topic: str, payload: bytes, audience: frozenset[Caller] | None = None) -> None:
        broker = self._broker
        if broker is None:
            return
        if audience is None:
            await broker.internal_message_broadcast(topic, payload, None)
            return
        # Only to the sessions whose caller may see the entity: as amqtt's broadcast does it, per subscription.
        sends = []
        for a_filter, subscribers in broker._subscriptions.items():
            if not broker._matches(topic, a_filter):
                continue
            for session, qos in subscribers:
                if session.transitions.state != "connected" or broker.callers.get(session.client_id) not in audience:
                    continue
                handler = broker._get_handler(session)
                if handler is not None:
                    sends.append(handler.mqtt_publish(topic, payload, qos, retain=False))
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)

    def callers(self) -> set[Caller]:
        broker = self._broker
        if broker is None:
            return set()
        found = {broker.callers.get(s.client_id) for subs in broker._subscriptions.values() for s, _ in subs}
        return {c for c in found if c is not None}

    def problem(self) -> str | None:
        if self._failure is not None:
            return self._failure
        if self._broker is None or self._broker.transitions.state != "started":
            return "the embedded MQTT broker is not running"
        return None


# -- external ------------------------------------------------------------------------------------


def client_id_for(db: str) -> str:
    """The fixed client id of the server on an external broker: one per database, the same after a restart."""
    return "stadsdata-" + hashlib.sha256(db.encode()).hexdigest()[:12]


class ExternalBroker:
    def __init__(self, url: str, client_id: str, intake: Intake, changed: SubscriptionsChanged, access: Access) -> None:
        parts = urlsplit(url)
        self.hostname = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.tls = parts.scheme == "mqtts"
        self.client_id = client_id
        self.intake = intake
        self.changed = changed
        # Creates that come through an external broker are anonymous: its own rules authenticated the publisher,
        # the server cannot tell who it was. With access control on they are refused (docs/access.md).
        self.anonymous = access.caller(ANONYMOUS)
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._ack_tail: asyncio.Future[None] | None = None
        self._error: str | None = "not connected yet"

    async def start(self) -> None:
        self.changed(None)
        self._task = asyncio.create_task(self._run(), name="stadsdata-mqtt-client")
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            log.warning("the MQTT broker at %s:%d does not answer yet; retrying", self.hostname, self.port)

    async def close(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=DRAIN_SECONDS)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def publish(self, topic: str, payload: bytes, audience: frozenset[Caller] | None = None) -> None:
        client = self._client
        if client is None or not self._connected.is_set() or (audience is not None and not audience):
            return
        try:
            await client.publish(topic, payload, qos=1)
        except aiomqtt.MqttError as exc:
            log.warning("notification on %s not published: %s", topic, exc)

    def problem(self) -> str | None:
        return None if self._connected.is_set() else f"the MQTT broker is not connected: {self._error}"

    def callers(self) -> set[Caller]:
        # The external broker's own rules decide who subscribes; the server cannot tell its subscribers apart,
        # so with access control on it publishes what anyone may see: public data.
        return {self.anonymous}

    def _make_client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY
        client = aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            max_inflight_messages=1000,
            tls_context=ssl.create_default_context() if self.tls else None,
        )
        client.pending_calls_threshold = 100_000  # notifications of a bulk create are many publishes at once
        paho_client: paho.Client = client._client  # noqa: SLF001 - manual acks and DUP are paho's only
        paho_client.manual_ack_set(True)
        paho_client.on_message = self._on_message
        return client

    async def _run(self) -> None:
        attempt = 0
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    options = SubscribeOptions(qos=1, noLocal=True)
                    filters = [*CREATE_FILTERS, *(s.topic_filter for s in self.intake.subscriptions)]
                    await client.subscribe([(f, options) for f in filters])
                    self._connected.set()
                    self._error = None
                    attempt = 0
                    log.info("connected to the MQTT broker at %s:%d", self.hostname, self.port)
                    async for _ in client.messages:  # only ends when the connection does (messages come below)
                        pass
            except aiomqtt.MqttError as exc:
                self._error = str(exc)
            finally:
                self._connected.clear()
                self._client = None
                self._ack_tail = None
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            log.warning("MQTT broker connection lost (%s); reconnecting in %.1f s", self._error, delay)
            await asyncio.sleep(delay)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """paho's callback, on the event loop (aiomqtt reads the socket there): store, then acknowledge."""
        msg = Inbound(
            message.topic, bytes(message.payload), message.qos, self.client_id, message.mid, message.dup, self.anonymous
        )
        previous, mine = self._ack_tail, asyncio.get_running_loop().create_future()
        self._ack_tail = mine
        task = asyncio.get_running_loop().create_task(self._receive(client, msg, previous, mine))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _receive(
        self, client: paho.Client, msg: Inbound, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]
    ) -> None:
        try:
            await self.intake.receive(msg)
            if previous is not None:
                await previous
            if msg.qos:
                client.ack(msg.packet_id or 0, msg.qos)
        except Exception:  # noqa: BLE001 - not stored: not acknowledged; the broker sends it again
            log.exception("an MQTT message on %s could not be stored; it is not acknowledged", msg.topic)
        finally:
            if not mine.done():
                mine.set_result(None)
