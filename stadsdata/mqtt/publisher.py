"""Change notifications: every committed create or update, published to each topic that asks for it.

``Service.on_change`` hands the changes of a write batch over as the batch is about to commit, on
the store's writer thread; ``Publisher.changed`` only checks whether anybody could want them and
queues them for the event loop. A task then waits for the commit (a no-op write: it is answered
once the batch before it, or a ``$batch`` change set that holds the writer, has committed), reads
the entities in one read transaction and publishes each as ``GET`` shows it (the same serializer),
to the topics that match:

* on the embedded broker, the topics clients are subscribed to (``v1.1/…`` filters, parsed once);
  with nobody subscribed to an entity type, its changes are not even queued;
* on an external broker, whose subscriptions cannot be seen, the default topics of every change
  (its set, itself, the related sets of the entities it links to by foreign key: see
  ``topics.default_topics``); property and ``$select`` topics are not published there. The same
  default topics are published on the embedded broker while a wildcard filter covers ``v1.1/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stadsdata.access import Caller, passing_ids
from stadsdata.api.serialize import Serializer
from stadsdata.model.entities import EntityType, FkOnSource, Registry
from stadsdata.model.rules import Change
from stadsdata.model.values import format_value
from stadsdata.mqtt.topics import PREFIX, Topic, TopicError, default_topics, parse_topic
from stadsdata.store.base import Entity, Store, Tx

log = logging.getLogger(__name__)

MAX_PENDING = 200_000
"""Most entity changes waiting to be published; beyond, changes are dropped (and counted) rather than
letting a slow broker grow the server's memory without bound."""

Publish = Callable[[str, bytes, "frozenset[Caller] | None"], Awaitable[None]]


def covers_sta(topic_filter: str) -> bool:
    """True for a wildcard filter that matches topics under ``v1.1/`` (``#``, ``v1.1/#``, ``+/Things``…)."""
    if "#" not in topic_filter and "+" not in topic_filter:
        return False
    first = topic_filter.split("/", 1)[0]
    return first in ("#", "+", PREFIX.rstrip("/"))


@dataclass
class Interest:
    """The subscriptions that matter for publishing, by entity type (replaced as a whole when they change)."""

    topics: dict[EntityType, list[Topic]] = field(default_factory=dict)
    defaults: bool = False  # publish the default topics of every change

    def wants(self, entity: EntityType) -> bool:
        return self.defaults or entity in self.topics


class Publisher:
    """Turns ``Service.on_change`` into MQTT messages; ``publish(topic, payload)`` sends one."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        base_url: str,
        publish: Publish,
        callers: Callable[[], set[Caller]] | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.callers = callers
        """With access control on: the callers of the subscribed sessions; each message goes only to those who may
        see its entity."""
        self.serializer = Serializer(registry, base_url)
        self.publish = publish
        self.interest = Interest()
        self.published = 0
        self.dropped = 0
        self._parsed: dict[str, Topic | None] = {}
        self._queue: asyncio.Queue[list[Change]] = asyncio.Queue()
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- subscriptions -------------------------------------------------------------------------

    def subscriptions_changed(self, filters: Iterable[str] | None) -> None:
        """The broker's current topic filters; None where they cannot be seen (publish the defaults)."""
        if filters is None:
            self.interest = Interest(defaults=True)
            return
        topics: dict[EntityType, list[Topic]] = {}
        defaults = False
        for f in filters:
            if covers_sta(f):
                defaults = True
                continue
            if not f.startswith(PREFIX):
                continue
            if f not in self._parsed:
                try:
                    self._parsed[f] = parse_topic(self.registry, f)
                except TopicError as exc:
                    log.info("MQTT subscription to %s gets no notifications: %s", f, exc)
                    self._parsed[f] = None
                if len(self._parsed) > 10_000:
                    self._parsed.clear()
            topic = self._parsed.get(f)
            if topic is not None:
                topics.setdefault(topic.entity, []).append(topic)
        self.interest = Interest(topics, defaults)

    # -- changes -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="stadsdata-mqtt-publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def changed(self, changes: list[Change]) -> None:
        """``Service.on_change``: called on the writer thread; keeps what someone may want, and returns."""
        interest = self.interest
        wanted = [c for c in changes if interest.wants(c.entity)]
        if not wanted or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._enqueue, wanted)

    def _enqueue(self, changes: list[Change]) -> None:
        size = sum(len(c.ids) for c in changes)
        if self._pending + size > MAX_PENDING:
            self.dropped += size
            log.warning("MQTT notifications dropped: %d changes wait to be published already", self._pending)
            return
        self._pending += size
        self._queue.put_nowait(changes)

    async def idle(self) -> None:
        """Wait until every queued change is published (tests, shutdown)."""
        while self._pending or not self._queue.empty():
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            changes = await self._queue.get()
            while not self._queue.empty():
                changes.extend(self._queue.get_nowait())
            size = sum(len(c.ids) for c in changes)
            try:
                await self._publish_changes(changes)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed notification must not stop the next ones
                log.exception("MQTT notifications of %d changes failed", size)
            finally:
                self._pending -= size

    async def _publish_changes(self, changes: list[Change]) -> None:
        merged: dict[tuple[EntityType, int], frozenset[str] | None] = {}
        for c in changes:
            for id_ in c.ids:
                key = (c.entity, id_)
                if key in merged:
                    before = merged[key]
                    merged[key] = None if before is None or c.fields is None else before | c.fields
                else:
                    merged[key] = c.fields if c.kind == "updated" else None
        # Wait for the commit of the batch (or change set) these changes come from.
        await self.store.write(lambda tx: None)
        interest = self.interest
        registry = self.registry

        callers = self.callers() if self.callers is not None else None
        if callers is not None and not callers:
            return  # nobody subscribes

        def read(tx: Tx) -> list[tuple[EntityType, Entity, frozenset[str] | None, list[Topic]]]:
            out = []
            for (entity, id_), fields in merged.items():
                e = tx.get(entity, id_)
                if e is None:  # created in a change set that was rolled back
                    continue
                matched = [t for t in interest.topics.get(entity, ()) if _matches(registry, tx, t, e, fields, entity)]
                out.append((entity, e, fields, matched))
            return out

        def audiences(tx: Tx) -> dict[tuple[EntityType, int], frozenset[Caller]]:
            """Who of ``callers`` may see each changed entity."""
            assert callers is not None
            by_type: dict[EntityType, set[int]] = {}
            for entity, id_ in merged:
                by_type.setdefault(entity, set()).add(id_)
            seen: dict[tuple[EntityType, int], set[Caller]] = {}
            for entity, ids in by_type.items():
                for caller in callers:
                    for id_ in ids if not caller.restricted else passing_ids(tx, entity, ids, caller.read):
                        seen.setdefault((entity, id_), set()).add(caller)
            return {k: frozenset(v) for k, v in seen.items()}

        def read_all(tx: Tx) -> tuple[list[Any], dict[tuple[EntityType, int], frozenset[Caller]] | None]:
            return read(tx), (audiences(tx) if callers is not None else None)

        found, audience_of = await self.store.run_read(read_all)
        sends: list[Awaitable[None]] = []
        for entity, e, _fields, matched in found:
            audience = None if audience_of is None else audience_of.get((entity, e.id), frozenset())
            if audience is not None and not audience:
                continue
            docs: dict[Any, bytes] = {}
            if interest.defaults:
                doc = docs[None] = orjson.dumps(self.serializer.entity(entity, e))
                for name in default_topics(registry, entity, e.id, e.links):
                    sends.append(self.publish(name, doc, audience))
            for topic in matched:
                if topic.property is not None:
                    value = e.values.get(topic.property.name)
                    shown = None if value is None else format_value(topic.property.kind, value)
                    sends.append(self.publish(topic.text, orjson.dumps({topic.property.name: shown}), audience))
                    continue
                select = topic.plan.select
                shaped = docs.get(select)
                if shaped is None:
                    shaped = docs[select] = orjson.dumps(self.serializer.entity(entity, e, topic.plan))
                sends.append(self.publish(topic.text, shaped, audience))
        for chunk in range(0, len(sends), 1000):
            await asyncio.gather(*sends[chunk : chunk + 1000])
        self.published += len(sends)


def _matches(
    registry: Registry, tx: Tx, topic: Topic, e: Entity, fields: frozenset[str] | None, entity: EntityType
) -> bool:
    if topic.kind == "set":
        return True
    if topic.kind == "entity":
        return topic.id == e.id
    if topic.kind == "property":
        assert topic.property is not None
        return topic.id == e.id and (fields is None or topic.property.name in fields)
    assert topic.parent is not None and topic.via is not None
    parent_id = topic.parent[1]
    if isinstance(registry.storage(topic.via), FkOnSource):
        return e.links.get(topic.via.name) == parent_id
    return parent_id in tx.related_ids(entity, e.id, topic.via)
