"""What one unit of write work may do, for one caller (docs/access.md).

The service's writer asks ``WriteCheck`` before it changes an entity (``changing``: Forbidden unless the
caller may change it), tells it what it created, and calls ``finish`` after the unit's writes: everything
created or changed must still be within what the caller may change (a writer of one project cannot create
a Thing in another, nor move one there). Links by ``@iot.id`` must name entities the caller may see
(``visible``). Changing the visibility, owner or project of a Thing or Datastream needs the admin role
(``access_members``). With access control off (``OPEN``) every check passes at once.
"""

from __future__ import annotations

from typing import Any

from stadsdata.access import Caller, passing_ids
from stadsdata.access.identity import VISIBILITIES, Role
from stadsdata.errors import Forbidden, ValidationError
from stadsdata.model.entities import DATASTREAM, MULTI_DATASTREAM, THING, EntityType
from stadsdata.store.base import Tx


class WriteCheck:
    def __init__(self, tx: Tx, caller: Caller) -> None:
        self.tx = tx
        self.caller = caller
        self.changed: dict[EntityType, set[int]] = {}
        """With access control: the entities the unit created or changed, checked by ``finish``."""
        self.new: set[tuple[EntityType, int]] = set()

    def visible(self, entity: EntityType, id_: int) -> bool:
        if not self.caller.restricted:
            return self.tx.exists(entity, id_)
        return bool(passing_ids(self.tx, entity, [id_], self.caller.read))

    def changing(self, entity: EntityType, id_: int) -> None:
        """About to change an entity the caller can see: Forbidden unless it may change it."""
        write = self.caller.write
        if write is None:
            return
        if not passing_ids(self.tx, entity, [id_], write):
            raise Forbidden(
                f"{self.caller.identity.describe()} may not change {entity.name} {id_}: that needs the writer role "
                "in its project (and, for personal data, the personal right)"
            )
        self.changed.setdefault(entity, set()).add(id_)

    def created(self, entity: EntityType, id_: int) -> None:
        """The unit created this entity (``finish`` checks it)."""
        if self.caller.restricted:
            self.changed.setdefault(entity, set()).add(id_)
            self.new.add((entity, id_))

    def finish(self) -> None:
        """After the unit's writes: everything it created or changed is still within what the caller may change."""
        write = self.caller.write
        if write is None:
            return
        who = self.caller.identity.describe()
        for entity, ids in self.changed.items():
            left = {i for i in ids if self.tx.exists(entity, i)}  # not deleted meanwhile
            refused = sorted(left - passing_ids(self.tx, entity, left, write))
            if not refused:
                continue
            if (entity, refused[0]) in self.new:
                raise Forbidden(
                    f"{who} may not create this {entity.name}: it would belong to a project (properties.project of "
                    "its Thing) in which that needs the writer role, or to personal data it may not see"
                )
            raise Forbidden(
                f"{who} may not change {entity.name} {refused[0]} like this: it would then belong to a project in "
                "which that needs the writer role, or to personal data it may not see"
            )

    def access_members(self, entity: EntityType, id_: int | None, props: dict[str, Any]) -> None:
        """``visibility``, ``owner`` and ``project`` in ``properties``: valid, and changed only by an admin."""
        if entity not in (THING, DATASTREAM, MULTI_DATASTREAM) or "properties" not in props:
            return
        new = props["properties"] if isinstance(props["properties"], dict) else {}
        visibility = new.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            raise ValidationError(
                f"properties.visibility {visibility!r} is none of {', '.join(VISIBILITIES)}", field="properties"
            )
        for member in ("owner", "project"):
            if member in new and not isinstance(new[member], str | None):
                raise ValidationError(f"properties.{member} must be a string", field="properties")
        write = self.caller.write
        if id_ is None or write is None:
            return
        current = self.tx.get(entity, id_)
        assert current is not None
        old = current.values.get("properties") or {}
        members = ("visibility", "owner", "project") if entity is THING else ("visibility", "owner")
        if all(old.get(m) == new.get(m) for m in members):
            return
        default = write.rules.default_project
        if entity is THING:
            projects = {old.get("project") or default, new.get("project") or default}
        else:
            thing_id = current.links.get("Thing")
            thing = self.tx.get(THING, thing_id) if thing_id is not None else None
            projects = {((thing.values.get("properties") or {}) if thing else {}).get("project") or default}
        me = self.caller.identity
        if not all(me.role(p) == Role.ADMIN for p in projects):
            raise Forbidden(
                f"{me.describe()} may not change the visibility, owner or project of {entity.name} {id_}: that needs "
                f"the admin role in project {' and '.join(sorted(projects))}"
            )
