"""The SensorThings MQTT extension: notifications of every create and update, Observations created by
publishing them, and the ingestion subscriptions; on an embedded broker or an external one (docs/mqtt.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from stadsdata.access import Access, Caller
from stadsdata.model.entities import Registry
from stadsdata.mqtt.broker import Broker, EmbeddedBroker, ExternalBroker, client_id_for
from stadsdata.mqtt.intake import Intake
from stadsdata.mqtt.publisher import Publisher
from stadsdata.service import Service
from stadsdata.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Mqtt", "enabled"]


def enabled(settings: Settings) -> bool:
    """MQTT is on with an external broker, or with the embedded one on a port (``mqtt_port`` 0: off)."""
    return settings.mqtt_url is not None or settings.mqtt_port != 0


class Mqtt:
    """The MQTT side of a running server: broker (or broker connection), intake and publisher."""

    def __init__(
        self,
        settings: Settings,
        service: Service,
        registry: Registry,
        created: Callable[[int], None] | None = None,
        access: Access | None = None,
    ) -> None:
        from stadsdata.ingest.connectors import subscriptions

        self.settings = settings
        self.service = service
        base = settings.base_url or f"http://{settings.host}:{settings.port}/v1.1"
        self.intake = Intake(service, registry, subscriptions(settings), created)
        self.broker: Broker
        access = access or Access(settings, service.store)
        self.publisher = Publisher(
            registry, service.store, base, self._publish, self._callers if access.enabled else None
        )
        if settings.mqtt_url is not None:
            client_id = client_id_for(settings.db)
            self.broker = ExternalBroker(
                settings.mqtt_url, client_id, self.intake, self.publisher.subscriptions_changed, access
            )
        else:
            self.broker = EmbeddedBroker(
                settings.host, settings.mqtt_port, self.intake, self.publisher.subscriptions_changed, access
            )

    async def _publish(self, topic: str, payload: bytes, audience: frozenset[Caller] | None = None) -> None:
        await self.broker.publish(topic, payload, audience)

    def _callers(self) -> set[Caller]:
        return self.broker.callers()

    async def start(self) -> None:
        self.publisher.start()
        self.service.on_change = self.publisher.changed
        await self.broker.start()

    async def stop(self) -> None:
        """Stop taking messages, let the ones being stored finish, publish what is queued, close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.publisher.idle(), 5)
        self.service.on_change = None
        await self.broker.close()
        await self.publisher.close()

    def problem(self) -> str | None:
        return self.broker.problem()
