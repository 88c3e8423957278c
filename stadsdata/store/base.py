"""The store contract: what the service needs from a database.

A store reads plans (``read``) and runs units of write work (``write``), each
unit in its own savepoint, many units per committed transaction. Units are
plain functions of a ``Tx`` that run on the store's single writer; a unit's
result is delivered only after its transaction has committed, so an
acknowledged write is a durable write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import MetaData
from sqlalchemy.sql import ClauseElement

from stadsdata.model.entities import EntityType, LinkTable, Relation
from stadsdata.query.plan import ReadPlan

T = TypeVar("T")


@dataclass
class Entity:
    """One entity as read from a store.

    ``values``: property name → value (see ``codec``); ``links``: to-one
    relation name → id of the related entity; ``expanded``: relation name →
    ``Entity``, ``None`` or ``Collection`` for ``$expand``.
    """

    id: int
    values: dict[str, Any]
    links: dict[str, int | None] = field(default_factory=dict)
    expanded: dict[str, Any] = field(default_factory=dict)
    keys: tuple[Any, ...] = ()  # sort keys, to continue after this entity


@dataclass
class Collection:
    items: list[Entity]
    count: int | None = None
    more: bool = False
    count_estimated: bool = False  # ``count`` is the database's estimate (see ReadPlan.estimate_count)

    @property
    def next_keys(self) -> tuple[Any, ...] | None:
        """Where the next page starts, when there is one."""
        return self.items[-1].keys if self.more and self.items else None


@dataclass(frozen=True)
class DeadLetter:
    """A payload a connector could not decode or store, kept with the reason until replayed."""

    id: int
    source: str
    path: str
    received: int  # microseconds since 1970 UTC
    reason: str
    payload: bytes
    topic: str | None = None  # the MQTT topic it came on; the decoder of some sources needs it


class Finish:
    """Wraps a function a unit returns to run after the batch's deferred work, before commit.

    Used to read back what a unit wrote once aggregates are up to date.
    """

    def __init__(self, fn: Callable[[Tx], Any]) -> None:
        self.fn = fn


class Tx(Protocol):
    """The operations a unit of write work may use; all within one transaction."""

    def insert(self, entity: EntityType, props: dict[str, Any], fks: dict[str, int | None]) -> int: ...

    def insert_many(
        self, entity: EntityType, names: tuple[str, ...], fk_columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Bulk insert: each row holds values of the properties ``names``, then of ``fk_columns``."""
        ...

    def update(self, entity: EntityType, id: int, props: dict[str, Any], fks: dict[str, int | None]) -> None: ...

    def delete(self, entity: EntityType, id: int) -> bool: ...

    def exists(self, entity: EntityType, id: int) -> bool: ...

    memo: dict[Any, Any]
    """Lookups remembered within the transaction until anything but an Observation is written (see
    ``SqlSession.memo``): for the rules that derive the same thing for every Observation of a batch."""

    def get(self, entity: EntityType, id: int) -> Entity | None: ...

    def related_ids(self, entity: EntityType, id: int, rel: Relation) -> list[int]: ...

    def link(self, link: LinkTable, source: int, target: int) -> None: ...

    def unlink(self, link: LinkTable, source: int, target: int | None = None) -> int: ...

    def read(self, plan: ReadPlan) -> Entity | Collection | None: ...

    def defer(self, key: str, data: Any) -> None:
        """Queue ``data`` for the batch-level function registered under ``key``."""
        ...

    def location_feature(self, thing_id: int) -> tuple[int, int | None] | None:
        """The Thing's first Location and the FeatureOfInterest generated from it, if that still exists."""
        ...

    def set_generated_foi(self, location_id: int, foi_id: int | None) -> None: ...

    def observation_extent(self, column: str, datastream_id: int) -> tuple[Any, Any, Any, Any, list[int]]: ...

    def feature_parents(self, feature_id: int) -> list[tuple[str, int]]:
        """(parent column, parent id) of the Datastreams and MultiDatastreams with Observations of a feature."""
        ...

    def claim(self, source: str, key: str, received: int) -> bool:
        """Record that the message ``key`` of ``source`` is committed with this transaction; False if it was before."""
        ...

    def add_dead_letter(
        self, source: str, path: str, reason: str, payload: bytes, received: int, topic: str | None = None
    ) -> int: ...

    def dead_letters(self, source: str | None, after: int, limit: int) -> list[DeadLetter]:
        """Dead letters with ids above ``after``, oldest first, of one source or all."""
        ...

    def remove_dead_letter(self, id: int) -> bool: ...

    metadata: MetaData
    """The store's tables: the entity tables and the bookkeeping ones (ingest keys, dead letters, access)."""

    def rows(self, stmt: ClauseElement) -> list[tuple[Any, ...]]:
        """Run a statement that returns rows (on the bookkeeping tables)."""
        ...

    def execute(self, stmt: ClauseElement) -> int:
        """Run a statement that changes rows (on the bookkeeping tables); how many it changed."""
        ...


DeferredFn = Callable[[Tx, list[Any]], None]


class Store(Protocol):
    async def read(self, plan: ReadPlan) -> Entity | Collection | None: ...

    async def run_read(self, fn: Callable[[Tx], T], *, snapshot: bool = True, small: bool = False) -> T:
        """``fn`` in a read transaction; with ``snapshot=False`` it runs one statement and may run without;
        ``small``: it handles few rows (the store may try it without a thread switch)."""
        ...

    async def write(self, fn: Callable[[Tx], Any]) -> Any:
        """Run ``fn`` in a write transaction; its result once committed. ``fn`` may be run more than once."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Every ``write`` inside the block joins one transaction, committed at the block's end."""
        ...

    def register_deferred(self, key: str, fn: DeferredFn) -> None: ...

    on_timing: Callable[[str, float], None] | None
    """Called with ("read" | "write", seconds) after each read transaction and write batch."""

    async def ping(self) -> None:
        """Answer a trivial query (readiness)."""
        ...

    def gauges(self) -> dict[str, Callable[[], float]]:
        """Current sizes by name (connections, queued writes), for metrics."""
        ...

    async def close(self) -> None: ...
