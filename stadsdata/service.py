"""The operations every edge calls: read, create, update, delete, link.

The HTTP API, the CLI and ingestion all go through ``Service``; it parses
nothing from the wire (that is the edges' job) and knows no SQL (that is the
store's). Every write is one unit of work on the store: it commits as a
whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any, Literal, cast

from stadsdata.access import OPEN, Caller, passing_ids
from stadsdata.errors import BadRequest, Conflict, MethodNotAllowed, NotFound, ValidationError
from stadsdata.ingest.base import (
    READING_NAMES,
    READINGS_PATH,
    DecodeError,
    Decoder,
    Delivery,
    Message,
    Reading,
    decode_message,
    encode_message,
    reading_problem,
)
from stadsdata.model.dataarray import ObservationRows
from stadsdata.model.entities import (
    DATASTREAM,
    FEATURE_OF_INTEREST,
    MULTI_DATASTREAM,
    OBSERVATION,
    FkOnSource,
    FkOnTarget,
    LinkTable,
    Registry,
)
from stadsdata.model.rules import CHANGES, EXTEND_DATASTREAM, RECOMPUTE_DATASTREAM, Change, Rules
from stadsdata.model.validate import parse_entity
from stadsdata.model.values import now_micros
from stadsdata.query.ast import QueryOptions
from stadsdata.query.path import ResourcePath
from stadsdata.query.plan import OpenPolicy, Paging, Policy, ReadPlan, plan_read
from stadsdata.store.base import Collection, DeadLetter, Entity, Finish, Store, Tx
from stadsdata.writer import Writer, apply_json_patch, parse_ref_body

UpdateMode = Literal["patch", "put", "json-patch"]


@dataclass
class ReadResult:
    plan: ReadPlan
    data: Entity | Collection


SMALL_PAGE = 200
"""A read of at most this many rows (without $count, $expand or $apply) is small: see ``Store.run_read``."""


class Service:
    def __init__(self, registry: Registry, store: Store, paging: Paging | None = None) -> None:
        self.registry = registry
        self.store = store
        self.paging = paging or Paging()
        self.rules = Rules(registry)
        self.on_ingest: Callable[[str, int, int], None] | None = None
        """Called with (path, readings stored, readings rejected) after each committed ingest (metrics)."""
        self.on_change: Callable[[list[Change]], None] | None = None
        """Called with the entities a batch of writes created or updated (any path: create, update,
        CreateObservations, ingest), on the store's writer thread as the batch is about to commit. It must only
        hand the changes over (thread-safely) and return; whoever reads the entities waits for the commit first
        (a no-op ``store.write`` answers once the batch, or a ``$batch`` change set holding the writer, is done)."""
        store.register_deferred(EXTEND_DATASTREAM, self.rules.extend_datastreams)
        store.register_deferred(CHANGES, self._changed)
        store.register_deferred(RECOMPUTE_DATASTREAM, self.rules.recompute_datastreams)
        self.rules.record = self._record  # the FeaturesOfInterest and HistoricalLocations the rules create

    def _changed(self, tx: Tx, changes: list[Change]) -> None:
        if self.on_change is not None and changes:
            self.on_change(changes)

    def _record(self, tx: Tx, change: Change) -> None:
        """Note a change for ``on_change``; nothing at all while nobody listens."""
        if self.on_change is not None:
            tx.defer(CHANGES, change)

    # -- reading ---------------------------------------------------------------------

    async def read(
        self,
        path: ResourcePath,
        options: QueryOptions,
        policy: Policy | None = None,
        after: tuple[Any, ...] | None = None,
        estimate_count: int = 0,
    ) -> ReadResult:
        """Read what ``path`` addresses; 404 when it, or the entity it navigates from, does not exist.

        ``after`` continues a listing after the row with these sort keys (from ``@iot.nextLink``);
        with ``estimate_count``, a $count the database estimates above that many rows is the estimate.
        """
        plan = plan_read(self.registry, path, options, policy or OpenPolicy(), self.paging, after)
        if estimate_count:
            plan = replace(plan, estimate_count=estimate_count)

        def run(tx: Tx) -> Entity | Collection | None:
            data = tx.read(plan)
            parent = path.parent
            # An aggregate has a row even over no rows at all: its parent is always checked.
            if isinstance(data, Collection) and (not data.items or plan.apply is not None) and parent is not None:
                return data if tx.read(self._id_plan(parent, policy)) is not None else None
            return data

        # Only a $count or an $expand is a second statement that must see the same moment as the page (the
        # parent's check after an empty page may not: either answer was true when the request came).
        small = plan.apply is None and not plan.count and not plan.expand and (plan.single or plan.top <= SMALL_PAGE)
        data = await self.store.run_read(run, snapshot=plan.count or bool(plan.expand), small=small)
        if data is None:
            raise NotFound(f"nothing found at {path.text()}")
        return ReadResult(plan, data)

    def _id_plan(self, path: ResourcePath, policy: Policy | None) -> ReadPlan:
        return plan_read(self.registry, path, QueryOptions(select=("@iot.id",)), policy or OpenPolicy(), self.paging)

    def _resolve_single(self, tx: Tx, path: ResourcePath, caller: Caller = OPEN) -> int:
        """The id of the one entity ``path`` addresses (checking every step of the path); what the caller may not
        see is not found."""
        last = path.segments[-1]
        if len(path.segments) == 1 and last.id is not None and not caller.restricted:
            if not tx.exists(last.entity, last.id):
                raise NotFound(f"there is no {last.entity.name} with @iot.id {last.id}")
            return last.id
        found = tx.read(self._id_plan(ResourcePath(path.segments), caller.read))
        if not isinstance(found, Entity):
            raise NotFound(f"nothing found at {path.text()}")
        return found.id

    # -- writing ---------------------------------------------------------------------

    async def create(self, path: ResourcePath, body: object, caller: Caller = OPEN) -> Entity:
        """POST to a collection: deep insert, links by ``@iot.id``; returns the created entity."""
        created: Entity = await self.store.write(self._create_unit(path, body, None, caller))
        return created

    async def create_claimed(
        self, path: ResourcePath, body: object, source: str, key: str, *, redelivered: bool, caller: Caller = OPEN
    ) -> Entity | None:
        """``create``, committed together with the claim of ``key`` for ``source`` (as ``ingest`` claims a
        message). A ``redelivered`` request whose key was claimed before creates nothing and returns None;
        a first delivery is always created (a key may come again with a new request)."""
        created: Entity | None = await self.store.write(
            self._create_unit(path, body, (source, key, redelivered), caller)
        )
        return created

    def _create_unit(
        self, path: ResourcePath, body: object, claim: tuple[str, str, bool] | None, caller: Caller = OPEN
    ) -> Callable[[Tx], Any]:
        if not path.is_collection or path.property is not None:
            raise MethodNotAllowed(
                f"POST creates entities in a collection; {path.text()} is not a collection",
                allow=path.methods,
            )
        inp = parse_entity(self.registry, path.target, body, "create")

        def unit(tx: Tx) -> Finish | None:
            if claim is not None and not tx.claim(claim[0], claim[1], now_micros()) and claim[2]:
                return None
            back = None
            writer = Writer(self, tx, caller)
            if len(path.segments) > 1:
                parent = path.segments[-2]
                parent_path = ResourcePath(path.segments[:-1])
                parent_id = self._resolve_single(tx, parent_path, caller)
                rel = path.segments[-1].relation
                assert rel is not None and parent.entity is not None
                back = (self.registry.inverse(rel), parent_id)
                if not rel.many or not isinstance(self.registry.storage(rel), FkOnTarget):
                    writer.check.changing(parent.entity, parent_id)  # the new entity is linked to it
            new_id = writer.create(inp, back)
            writer.check.finish()
            return Finish(lambda t: t.get(inp.entity, new_id))

        return unit

    async def update(self, path: ResourcePath, body: object, mode: UpdateMode, caller: Caller = OPEN) -> Entity:
        if path.is_collection or path.property is not None or path.ref:
            raise MethodNotAllowed(
                f"{mode.upper() if mode != 'json-patch' else 'PATCH'} changes one entity; "
                f"{path.text()} is not an entity",
                allow=path.methods,
            )
        entity = path.target
        inp = None if mode == "json-patch" else parse_entity(self.registry, entity, body, mode)

        def unit(tx: Tx) -> Finish:
            id_ = self._resolve_single(tx, path, caller)
            writer = Writer(self, tx, caller)
            writer.check.changing(entity, id_)
            if inp is None:
                current = tx.get(entity, id_)
                assert current is not None
                patched = apply_json_patch(self.registry, entity, current, body)
                change = parse_entity(self.registry, entity, patched, "put")
            else:
                change = inp
            writer.update(entity, id_, change, put=mode != "patch")
            writer.check.finish()
            return Finish(lambda t: t.get(entity, id_))

        return await self.store.write(unit)  # type: ignore[no-any-return]

    async def delete(self, path: ResourcePath, caller: Caller = OPEN) -> None:
        if path.is_collection or path.property is not None:
            raise MethodNotAllowed(
                f"DELETE removes one entity, as in {path.target.set_name}(1); {path.text()} is not an entity",
                allow=path.methods,
            )

        def unit(tx: Tx) -> None:
            id_ = self._resolve_single(tx, path, caller)
            writer = Writer(self, tx, caller)
            writer.check.changing(path.target, id_)
            writer.delete(path.target, id_)

        await self.store.write(unit)

    # -- $ref --------------------------------------------------------------------------

    async def add_ref(self, path: ResourcePath, body: object, base_url: str, caller: Caller = OPEN) -> None:
        """POST …/Collection/$ref (add a link) or PUT …/Single/$ref (set a link)."""
        seg = path.segments[-1]
        if len(path.segments) < 2 or seg.relation is None or seg.id is not None:
            raise BadRequest("a link is added at a navigation property, as in Things(1)/Locations/$ref")
        rel = seg.relation
        target_id = parse_ref_body(self.registry, body, seg.entity, base_url)
        owner_path = ResourcePath(path.segments[:-1])

        def unit(tx: Tx) -> None:
            owner_id = self._resolve_single(tx, owner_path, caller)
            writer = Writer(self, tx, caller)
            if not writer.check.visible(seg.entity, target_id):
                raise ValidationError(f"there is no {seg.entity.name} with @iot.id {target_id}", field="@iot.id")
            owner = owner_path.target
            writer.check.changing(owner, owner_id)
            writer.check.changing(seg.entity, target_id)
            writer.link(owner, owner_id, rel, [target_id], replace=not rel.many)
            writer.check.finish()

        await self.store.write(unit)

    async def remove_ref(self, path: ResourcePath, caller: Caller = OPEN) -> None:
        """DELETE …/Collection(id)/$ref: remove one link where the relation allows it."""
        seg = path.segments[-1]
        if len(path.segments) < 2 or seg.relation is None or (seg.relation.many and seg.id is None):
            raise BadRequest("name the link to remove, as in Things(1)/Locations(2)/$ref")
        rel = seg.relation
        owner_path = ResourcePath(path.segments[:-1])
        storage = self.registry.storage(rel)
        inverse = self.registry.inverse(rel)
        if isinstance(storage, FkOnSource) and (rel.required or rel.one_of):
            alternatives = [r.name for r in owner_path.target.relations if rel.one_of and r.one_of == rel.one_of]
            owner, needed = owner_path.target.name, " or ".join(alternatives) or rel.name
        elif isinstance(storage, FkOnTarget) and inverse.required:
            owner, needed = seg.entity.name, inverse.name
        else:
            owner = needed = ""
        if owner:
            raise Conflict(
                f"cannot remove the link: every {owner} needs its {needed}; link another one or delete the entity"
            )

        def unit(tx: Tx) -> None:
            owner_id = self._resolve_single(tx, owner_path, caller)
            target_id = self._resolve_single(tx, path, caller)
            writer = Writer(self, tx, caller)
            writer.check.changing(owner_path.target, owner_id)
            writer.check.changing(seg.entity, target_id)
            if isinstance(storage, LinkTable):
                tx.unlink(storage, owner_id, target_id)
            elif isinstance(storage, FkOnSource):
                tx.update(owner_path.target, owner_id, {}, {storage.column: None})
            else:
                tx.update(seg.entity, target_id, {}, {storage.column: None})

        await self.store.write(unit)

    # -- bulk ----------------------------------------------------------------------------

    async def create_observations(self, groups: list[ObservationRows], caller: Caller = OPEN) -> list[int | str]:
        """CreateObservations: every valid row is inserted on the bulk path; a bad row gets its error.

        All rows of the request commit together; rows that cannot be created
        (unknown FeatureOfInterest, a Datastream without one to derive) are
        reported in place and do not stop the others.
        """

        def unit(tx: Tx) -> list[int | str]:
            now = now_micros()
            out: list[int | str] = []
            for gi, group in enumerate(groups):
                out.extend(self._create_group(tx, group, now, f"[{gi}]", caller))
            return out

        return await self.store.write(unit)  # type: ignore[no-any-return]

    def _create_group(
        self, tx: Tx, group: ObservationRows, now: int, where: str, caller: Caller = OPEN
    ) -> list[int | str]:
        ds_id = group.datastream_id
        parent = MULTI_DATASTREAM if group.multi else DATASTREAM
        if not (tx.exists(parent, ds_id) if not caller.restricted else passing_ids(tx, parent, [ds_id], caller.read)):
            return [f"error: there is no {parent.name} with @iot.id {ds_id}"] * len(group.rows)
        if caller.write is not None and not passing_ids(tx, parent, [ds_id], caller.write):
            problem = f"error: {caller.identity.describe()} may not add Observations to {parent.name} {ds_id}"
            return [problem] * len(group.rows)
        if caller.restricted:
            features = {row[1] for row in group.rows if not isinstance(row, str) and row[1] is not None}
            hidden = features - passing_ids(tx, FEATURE_OF_INTEREST, features, caller.read) if features else set()
            if hidden:
                group = replace(group, rows=[
                    f"there is no FeatureOfInterest with @iot.id {row[1]}"
                    if not isinstance(row, str) and row[1] in hidden else row
                    for row in group.rows
                ])  # fmt: skip
        names = group.names
        default_time = "phenomenonTime" not in names
        if default_time:
            names = (*names, "phenomenonTime")
        time_at = names.index("phenomenonTime")
        result_at = names.index("result")
        parent_column = "multi_datastream_id" if group.multi else "datastream_id"
        fk_columns = (parent_column, "feature_of_interest_id")
        valid = cast(list[tuple[tuple[Any, ...], int | None]], group.rows)  # checked in the condition
        if (
            not group.multi
            and all(type(row) is tuple for row in group.rows)
            and (default_time or all(values[time_at] is not None for values, _ in valid))
        ):
            # The common case, in bulk: every row is valid and every FeatureOfInterest exists.
            features = set(map(_second, valid))
            try:
                shared = self.rules.derived_feature(tx, parent, ds_id, where) if None in features else None
            except ValidationError:
                shared = None  # those rows get their error below
            if all(tx.exists(FEATURE_OF_INTEREST, f) for f in features if f is not None) and (
                shared is not None or None not in features
            ):
                now_time = ((now, None),) if default_time else ()
                bulk = [(*values, *now_time, ds_id, shared if f is None else f) for values, f in valid]
                ids = tx.insert_many(OBSERVATION, names, fk_columns, bulk)
                self._record(tx, Change(OBSERVATION, tuple(ids), "created"))
                self.rules.observations_written(tx, (parent, ds_id), names, bulk, len(names) + 1)
                return list(ids)
        results: list[int | str] = []
        pending: list[int] = []
        rows: list[tuple[Any, ...]] = []
        known_features: dict[int, bool] = {}
        derived: int | str | None = None
        multi_size = len(tx.related_ids(parent, ds_id, parent.relation("ObservedProperties"))) if group.multi else 0  # type: ignore[arg-type]
        for row in group.rows:
            if isinstance(row, str):
                results.append(f"error: {row}")
                continue
            values, feature = row
            if feature is None:
                if derived is None:
                    try:
                        derived = self.rules.derived_feature(tx, parent, ds_id, where)
                    except ValidationError as exc:
                        derived = f"error: {exc.message}"
                if isinstance(derived, str):
                    results.append(derived)
                    continue
                feature = derived
            elif feature not in known_features:
                known_features[feature] = tx.exists(FEATURE_OF_INTEREST, feature)
            if not known_features.get(feature, True):
                results.append(f"error: there is no FeatureOfInterest with @iot.id {feature}")
                continue
            if group.multi and (not isinstance(values[result_at], list) or len(values[result_at]) != multi_size):
                results.append(
                    f"error: an Observation of MultiDatastream {ds_id} has an array result with {multi_size} values"
                )
                continue
            if default_time:
                values = (*values, (now, None))
            elif values[time_at] is None:
                values = (*values[:time_at], (now, None), *values[time_at + 1 :])
            pending.append(len(results))
            rows.append((*values, ds_id, feature))
            results.append(0)
        ids = tx.insert_many(OBSERVATION, names, fk_columns, rows)
        self._record(tx, Change(OBSERVATION, tuple(ids), "created"))
        for i, new_id in zip(pending, ids, strict=True):
            results[i] = new_id
        self.rules.observations_written(tx, (parent, ds_id), names, rows, len(names) + 1)
        return results

    # -- ingestion (stadsdata/ingest/base.py) ----------------------------------------------

    async def ingest(self, message: Message, retire: int | None = None) -> Delivery:
        """Store the readings of ``message`` and its key in one transaction; return once committed.

        A message whose (source, key) was committed before creates nothing (``duplicate``).
        Readings the store cannot take (an unknown Datastream, a result that is no JSON value,
        a time outside the years 1 to 9999) are dead-lettered together, as a message of their
        own, while the others are stored. ``retire``: the id of the dead letter this message
        replays, removed in the same transaction.
        """
        checked: list[tuple[Reading, str | None]] = [(r, reading_problem(r)) for r in message.readings]
        by_datastream: dict[int, list[int]] = {}
        for i, (reading, problem) in enumerate(checked):
            if problem is None:
                by_datastream.setdefault(reading.datastream_id, []).append(i)

        def unit(tx: Tx) -> Delivery:
            now = now_micros()
            if retire is not None:
                tx.remove_dead_letter(retire)
            if message.key is not None and not tx.claim(message.source, message.key, now):
                return Delivery(duplicate=True)
            outcome: list[int | str] = [problem or 0 for _, problem in checked]
            for ds, indexes in by_datastream.items():
                rows: list[tuple[tuple[Any, ...], int | None] | str] = []
                for i in indexes:
                    r = message.readings[i]
                    rows.append(
                        (((r.phenomenon_time, None), r.result, r.result_time, r.parameters), r.feature_of_interest_id)
                    )
                group = ObservationRows(ds, names=READING_NAMES, rows=rows)
                for i, result in zip(indexes, self._create_group(tx, group, now, f"Datastream {ds}"), strict=True):
                    outcome[i] = result.removeprefix("error: ") if isinstance(result, str) else result
            rejected = [(i, o) for i, o in enumerate(outcome) if isinstance(o, str)]
            if rejected:
                bad = Message(
                    message.source, message.key, tuple(message.readings[i] for i, _ in rejected), message.path
                )
                reasons = "; ".join(f"reading {i}: {why}" for i, why in rejected)
                tx.add_dead_letter(message.source, READINGS_PATH, reasons, encode_message(bad), now)
            created = [o for o in outcome if isinstance(o, int)]
            return Delivery(created, False, [why for _, why in rejected])

        delivery: Delivery = await self.store.write(unit)
        if self.on_ingest is not None and not delivery.duplicate:
            self.on_ingest(message.path, len(delivery.created), len(delivery.rejected))
        return delivery

    async def dead_letter(self, source: str, path: str, reason: str, payload: bytes, topic: str | None = None) -> int:
        """Keep a payload that could not be decoded, with the reason (and the MQTT topic it came on); its id once
        committed."""
        new_id: int = await self.store.write(
            lambda tx: tx.add_dead_letter(source, path, reason, payload, now_micros(), topic)
        )
        if self.on_ingest is not None:
            self.on_ingest(path, 0, 1)
        return new_id

    async def dead_letters(self, source: str | None = None, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        return await self.store.run_read(lambda tx: tx.dead_letters(source, after, limit))

    async def replay(self, letter: DeadLetter, decoders: Mapping[str, Decoder]) -> Delivery:
        """Decode a dead letter again (with the connector of its source) and ingest it; the letter is removed
        in the same transaction. Readings refused again become a new dead letter; a payload that still does
        not decode raises ``DecodeError`` and the letter stays.

        A payload the connector could not decode was never committed, so its message keeps the key the
        connector gives it: two letters of one delivery (a network server that sent it again) store it
        once. Readings the store refused, and messages without a key, get the key ``dead-letter:<id>``
        instead: the original key is committed already (with the other readings of the message), and
        replaying one letter twice must not store twice.
        """
        if letter.path == READINGS_PATH:
            message = replace(decode_message(letter.payload), key=None)
        else:
            decode = decoders.get(letter.source)
            if decode is None:
                known = ", ".join(sorted(decoders)) or "none"
                raise DecodeError(f"no connector decodes source {letter.source!r} (configured: {known})")
            message = decode(letter.payload, letter.topic)
        if message.key is None:
            message = replace(message, key=f"dead-letter:{letter.id}")
        return await self.ingest(message, retire=letter.id)

    async def remove_dead_letter(self, id: int) -> bool:
        removed: bool = await self.store.write(lambda tx: tx.remove_dead_letter(id))
        return removed


_second: Callable[[Any], Any] = itemgetter(1)
