"""The write operations of one unit of work, with the rules applied (``Writer``), and the parsing of the bodies
of a JSON Patch and of a ``$ref`` that ``Service`` uses.

A ``Writer`` lives for one unit on the store's writer: it inserts deep, links both ways, moves foreign keys and
deletes, each time with the access check (``WriteCheck``) and the rules of ``model/rules.py`` (derived features,
Thing–Location history, Datastream extents), and reports every change to the service (MQTT notifications).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jsonpatch

from stadsdata.access import OPEN, Caller
from stadsdata.access.writes import WriteCheck
from stadsdata.errors import ValidationError
from stadsdata.model.entities import (
    LOCATION,
    MULTI_DATASTREAM,
    OBSERVATION,
    THING,
    EntityType,
    FkOnSource,
    FkOnTarget,
    Registry,
    Relation,
)
from stadsdata.model.rules import RECOMPUTE_DATASTREAM, Change
from stadsdata.model.validate import EntityInput, Ref, parse_id_value
from stadsdata.model.values import format_value, now_micros
from stadsdata.query.path import Segment, parse_path
from stadsdata.store.base import Entity, Tx

if TYPE_CHECKING:
    from stadsdata.service import Service


class Writer:
    """The write operations of one unit, with the rules applied."""

    def __init__(self, service: Service, tx: Tx, caller: Caller = OPEN) -> None:
        self.service = service
        self.registry = service.registry
        self.rules = service.rules
        self.tx = tx
        self.now = now_micros()
        self.check = WriteCheck(tx, caller)

    def resolve(self, item: Ref | EntityInput) -> int:
        if isinstance(item, Ref):
            if not self.check.visible(item.entity, item.id):
                raise ValidationError(
                    f"{item.field}: there is no {item.entity.name} with @iot.id {item.id}", field=item.field
                )
            return item.id
        return self.create(item, None)

    def create(self, inp: EntityInput, back: tuple[Relation, int] | None) -> int:
        """Insert ``inp`` and everything nested in it; ``back`` links it to the entity it was posted under."""
        entity = inp.entity
        tx = self.tx
        fks: dict[str, int | None] = {}
        for rel in entity.relations:
            storage = self.registry.storage(rel)
            if not isinstance(storage, FkOnSource):
                continue
            if back is not None and back[0] is rel:
                fks[storage.column] = back[1]
            elif rel.name in inp.links:
                fks[storage.column] = self.resolve(inp.links[rel.name][0])
        props = dict(inp.props)
        if entity is OBSERVATION:
            self.rules.observation_defaults(tx, props, fks, self.now, inp.field)
        for rel in entity.relations:
            storage = self.registry.storage(rel)
            if rel.required and isinstance(storage, FkOnSource) and fks.get(storage.column) is None:
                field = f"{inp.field}.{rel.name}" if inp.field else rel.name
                raise ValidationError(
                    f"{field} is missing; a {entity.name} must be linked to a {rel.target}, "
                    f'e.g. "{rel.name}": {{"@iot.id": 1}}',
                    field=field,
                )
        self.check.access_members(entity, None, props)
        new_id = tx.insert(entity, props, fks)
        self.check.created(entity, new_id)
        self.service._record(tx, Change(entity, (new_id,), "created"))
        if entity is OBSERVATION:
            self.rules.observation_written(tx, props, fks)
        for rel in entity.relations:
            storage = self.registry.storage(rel)
            if isinstance(storage, FkOnSource):
                continue
            items = inp.links.get(rel.name, [])
            back_ids = [back[1]] if back is not None and back[0] is rel else []
            if not items and not back_ids:
                continue
            if isinstance(storage, FkOnTarget):
                inverse = self.registry.inverse(rel)
                for item in items:
                    if isinstance(item, Ref):
                        self.resolve(item)
                        self.check.changing(item.entity, item.id)
                        tx.update(item.entity, item.id, {}, {storage.column: new_id})
                    else:
                        self.create(item, (inverse, new_id))
            else:
                ids = [self.resolve(item) for item in items] + back_ids
                self.link(entity, new_id, rel, ids, replace=False)
        if entity is MULTI_DATASTREAM:
            self.rules.check_multi_datastream(tx, new_id, inp.field)
        return new_id

    def link(self, entity: EntityType, id_: int, rel: Relation, target_ids: list[int], *, replace: bool) -> None:
        """Link ``id_`` to ``target_ids`` through ``rel``, applying the Thing–Location rule."""
        tx = self.tx
        if entity is THING and rel.name == "Locations":
            self.rules.set_thing_locations(tx, id_, target_ids, self.now, replace=replace)
            return
        if entity is LOCATION and rel.name == "Things":
            for thing in target_ids:
                self.rules.set_thing_locations(tx, thing, [id_], self.now)
            return
        storage = self.registry.storage(rel)
        if isinstance(storage, FkOnSource):
            self.set_key(entity, id_, storage.column, target_ids[-1])
        elif isinstance(storage, FkOnTarget):
            for target in target_ids:
                self.set_key(self.registry.target(rel), target, storage.column, id_)
        else:
            if replace:
                tx.unlink(storage, id_)
            for target in target_ids:
                tx.link(storage, id_, target)

    def set_key(self, entity: EntityType, id_: int, column: str, target: int) -> None:
        """Point foreign key ``column`` of ``id_`` at ``target``. An Observation that moves to another
        (Multi)Datastream or FeatureOfInterest has the times and area of its parents before and after computed
        again."""
        before = self.tx.get(entity, id_) if entity is OBSERVATION else None
        self.tx.update(entity, id_, {}, {column: target})
        if before is not None:
            after = self.tx.get(entity, id_)
            assert after is not None
            self.tx.defer(RECOMPUTE_DATASTREAM, self.rules.parent_of(before.links))
            self.tx.defer(RECOMPUTE_DATASTREAM, self.rules.parent_of(after.links))

    def update(self, entity: EntityType, id_: int, inp: EntityInput, *, put: bool) -> None:
        tx = self.tx
        props = dict(inp.props)
        if put:
            for prop in entity.properties:
                if prop.name not in props and not prop.generated and not prop.required:
                    props[prop.name] = None
            if entity is OBSERVATION and props.get("phenomenonTime") is None:
                props["phenomenonTime"] = (self.now, None)
        fks: dict[str, int | None] = {}
        for rel in entity.relations:
            storage = self.registry.storage(rel)
            if isinstance(storage, FkOnSource) and rel.name in inp.links:
                fks[storage.column] = self.resolve(inp.links[rel.name][0])
        self.check.access_members(entity, id_, props)
        old_parent = None
        if entity is OBSERVATION:
            current = tx.get(entity, id_)
            assert current is not None
            old_parent = self.rules.parent_of(current.links)
        tx.update(entity, id_, props, fks)
        self.service._record(tx, Change(entity, (id_,), "updated", frozenset(props)))
        if entity is LOCATION and "location" in props:
            self.rules.location_changed(tx, id_)
        if entity is OBSERVATION:
            updated = tx.get(entity, id_)
            assert updated is not None
            new_parent = self.rules.observation_parent(
                {"datastream_id": updated.links["Datastream"], "multi_datastream_id": updated.links["MultiDatastream"]},
                "",
            )
            if new_parent[0] is MULTI_DATASTREAM:
                self.rules.check_multi_result(tx, new_parent[1], updated.values["result"], "")
            tx.defer(RECOMPUTE_DATASTREAM, old_parent)
            tx.defer(RECOMPUTE_DATASTREAM, new_parent)
        for rel in entity.relations:
            storage = self.registry.storage(rel)
            if isinstance(storage, FkOnSource) or rel.name not in inp.links:
                continue
            items = inp.links[rel.name]
            if isinstance(storage, FkOnTarget):
                inverse = self.registry.inverse(rel)
                for item in items:
                    if isinstance(item, Ref):
                        self.resolve(item)
                        self.check.changing(item.entity, item.id)
                        self.set_key(item.entity, item.id, storage.column, id_)
                    else:
                        self.create(item, (inverse, id_))
            else:
                ids = [self.resolve(item) for item in items]
                self.link(entity, id_, rel, ids, replace=True)
        if entity is MULTI_DATASTREAM:
            self.rules.check_multi_datastream(tx, id_, inp.field)

    def delete(self, entity: EntityType, id_: int) -> None:
        memo = self.rules.before_delete(self.tx, entity.name, id_)
        self.tx.delete(entity, id_)
        self.rules.after_delete(self.tx, entity.name, id_, memo)


def apply_json_patch(registry: Registry, entity: EntityType, current: Entity, patch: object) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch to the entity's properties (as they are shown to clients)."""
    if not isinstance(patch, list):
        raise ValidationError(
            'a JSON Patch is an array of operations, as in [{"op": "replace", "path": "/name", "value": "x"}]',
            field="body",
        )
    doc = {}
    for prop in entity.properties:
        value = current.values.get(prop.name)
        doc[prop.name] = None if value is None else format_value(prop.kind, value)
    try:
        result = jsonpatch.apply_patch(doc, patch)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError, KeyError) as exc:
        raise ValidationError(f"the JSON Patch cannot be applied: {exc}", field="body") from None
    if not isinstance(result, dict):
        raise ValidationError("the JSON Patch must leave an object", field="body")
    # Members set to null by the patch are optional properties being cleared.
    return {k: v for k, v in result.items() if v is not None}


def parse_ref_body(registry: Registry, body: object, target: EntityType, base_url: str) -> int:
    """``{"@iot.id": 3}`` or ``{"@iot.selfLink": ".../Locations(3)"}`` → 3."""
    if not isinstance(body, dict):
        raise ValidationError('a reference is an object such as {"@iot.id": 3}', field="body")
    if body.get("@iot.id") is not None:
        return parse_id_value(body["@iot.id"], "@iot.id")
    link = body.get("@iot.selfLink")
    if isinstance(link, str):
        rest = link[len(base_url) :] if link.startswith(base_url) else link.rsplit("/", 1)[-1]
        ref = parse_path(registry, rest)
        last: Segment = ref.segments[-1]
        if last.entity is not target or last.id is None or len(ref.segments) != 1 or ref.property or ref.ref:
            raise ValidationError(f"@iot.selfLink must point to one {target.name}", field="@iot.selfLink")
        return last.id
    raise ValidationError('a reference needs "@iot.id" or "@iot.selfLink"', field="body")
