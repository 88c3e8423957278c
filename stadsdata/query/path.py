"""Resource paths: ``Things(1)/Datastreams(2)/Observations``, ``…/name/$value``, ``…/$ref``.

A path is parsed against the registry into segments; the planner turns the
segments into a scope for the query. Paths know nothing of query options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stadsdata.errors import BadRequest, NotFound
from stadsdata.model.entities import EntityType, Property, Registry, Relation

_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$")


@dataclass(frozen=True)
class Segment:
    """One step: an entity set (``relation`` is None) or a navigation property."""

    entity: EntityType
    relation: Relation | None
    id: int | None


@dataclass(frozen=True)
class ResourcePath:
    segments: tuple[Segment, ...]

    @property
    def target(self) -> EntityType:
        return self.segments[-1].entity

    @property
    def is_collection(self) -> bool:
        """True when the path names a set of entities rather than one."""
        last = self.segments[-1]
        if self.property is not None or last.id is not None:
            return False
        return last.relation is None or last.relation.many

    @property
    def parent(self) -> ResourcePath | None:
        """The path of the entity this collection or entity was reached from."""
        if len(self.segments) < 2:
            return None
        return ResourcePath(self.segments[:-1])

    @property
    def methods(self) -> tuple[str, ...]:
        """The HTTP methods this path answers (besides OPTIONS)."""
        read = ("GET", "HEAD")
        last = self.segments[-1]
        if self.property is not None or (self.ref and last.relation is None):
            return read
        if self.is_collection:  # create; at …/$ref add a link (DELETE explains how to name one)
            return (*read, "POST", "DELETE") if self.ref else (*read, "POST")
        if self.ref:
            return (*read, "DELETE") if last.relation is not None and last.relation.many else (*read, "PUT", "DELETE")
        return (*read, "PATCH", "PUT", "DELETE")

    # Declared after the methods so that the field does not shadow the builtin decorator.
    property: Property | None = None
    value: bool = False  # …/property/$value
    ref: bool = False  # …/$ref

    def text(self) -> str:
        parts = []
        for seg in self.segments:
            name = seg.relation.name if seg.relation else seg.entity.set_name
            parts.append(name if seg.id is None else f"{name}({seg.id})")
        if self.property:
            parts.append(self.property.name)
        if self.value:
            parts.append("$value")
        if self.ref:
            parts.append("$ref")
        return "/".join(parts)


def parse_id(text: str, where: str) -> int:
    raw = text.strip()
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        raw = raw[1:-1]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadRequest(
            f"{where}: {text!r} is not a valid id; ids are positive integers, as in Things(1)", field=where
        )
    return int(raw)


def parse_path(registry: Registry, path: str) -> ResourcePath:
    """Parse the part of a URL after ``/v1.1/``."""
    memo = registry.memo.setdefault("paths", {})  # parsed paths are immutable; errors are not kept
    found: ResourcePath | None = memo.get(path)
    if found is None:
        found = _parse_path(registry, path)
        if len(memo) > 4096:
            memo.clear()
        memo[path] = found
    return found


def _parse_path(registry: Registry, path: str) -> ResourcePath:
    parts = [p for p in path.strip("/").split("/")]
    if not parts or parts == [""]:
        raise BadRequest("empty resource path")
    segments: list[Segment] = []
    prop: Property | None = None
    value = ref = False
    for i, part in enumerate(parts):
        if ref or value:
            raise BadRequest(f"nothing may follow {'$ref' if ref else '$value'} in a resource path")
        if part == "$ref":
            if prop is not None or not segments:
                raise BadRequest("$ref must follow an entity or a collection of entities")
            ref = True
            continue
        if part == "$value":
            if prop is None:
                raise BadRequest("$value must follow a property, as in Things(1)/name/$value")
            value = True
            continue
        if prop is not None:
            raise BadRequest(f"{prop.name} is a property; {part!r} cannot follow it")
        m = _SEGMENT.match(part)
        if not m:
            raise BadRequest(f"{part!r} is not a valid path segment")
        name, id_text = m.group(1), m.group(2)
        if not segments:
            entity = registry.sets.get(name)
            if entity is None:
                raise NotFound(f"there is no entity set {name!r}; the entity sets are {', '.join(registry.sets)}")
            ident = None if id_text is None else parse_id(id_text, name)
            segments.append(Segment(entity, None, ident))
            continue
        last = segments[-1]
        if last.id is None and (last.relation is None or last.relation.many):
            collection = parts[i - 1].split("(")[0]
            raise BadRequest(
                f"{part!r} cannot follow a collection; address one entity first, as in {collection}(1)/{part}"
            )
        rel = last.entity.relation(name)
        if rel is not None:
            target = registry.target(rel)
            if id_text is not None and not rel.many:
                raise BadRequest(f"{name} is a single entity; it takes no id")
            ident = None if id_text is None else parse_id(id_text, name)
            segments.append(Segment(target, rel, ident))
            continue
        p = last.entity.property(name)
        if p is not None and id_text is None:
            prop = p
            continue
        known = [p.name for p in last.entity.properties] + [r.name for r in last.entity.relations]
        raise NotFound(f"{last.entity.name} has no property or relation {name!r}; it has {', '.join(known)}")
    return ResourcePath(tuple(segments), prop, value, ref)
