"""Entities and collections → SensorThings JSON, generic over the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

from stadsdata.api import dataarray
from stadsdata.model.entities import EntityType, Kind, Registry
from stadsdata.model.values import format_instant, format_interval
from stadsdata.query.plan import ReadPlan
from stadsdata.store.base import Collection, Entity


def _formatter(kind: Kind) -> Callable[[Any], Any] | None:
    if kind is Kind.INSTANT:
        return format_instant
    if kind is Kind.INTERVAL:
        return lambda v: format_interval(*v)
    if kind is Kind.INSTANT_OR_INTERVAL:
        return lambda v: format_instant(v[0]) if v[1] is None else format_interval(v[0], v[1])
    return None


@dataclass(frozen=True)
class _Shape:
    """What to write for entities of one type under one $select/$expand."""

    id: bool
    self_link: bool
    props: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    links: tuple[tuple[str, str], ...]  # (member name, suffix of the self link)


@lru_cache(maxsize=1024)
def _shape(entity: EntityType, select: tuple[str, ...] | None, expanded: tuple[str, ...]) -> _Shape:
    def chosen(name: str) -> bool:
        return select is None or name in select

    return _Shape(
        id=chosen("@iot.id") or (select is not None and "id" in select),
        self_link=chosen("@iot.selfLink"),
        props=tuple((p.name, _formatter(p.kind)) for p in entity.properties if chosen(p.name)),
        links=tuple(
            (f"{r.name}@iot.navigationLink", f"/{r.name}")
            for r in entity.relations
            if r.name not in expanded and chosen(r.name)
        ),
    )


class Serializer:
    """Turns store results into response bodies; ``base`` is the service root URL (…/v1.1)."""

    def __init__(self, registry: Registry, base: str) -> None:
        self.registry = registry
        self.base = base.rstrip("/")

    def self_link(self, entity: EntityType, id_: int) -> str:
        return f"{self.base}/{entity.set_name}({id_})"

    def entity(self, entity: EntityType, e: Entity, plan: ReadPlan | None = None) -> dict[str, Any]:
        expand = () if plan is None else plan.expand
        shape = _shape(entity, None if plan is None else plan.select, tuple(ep.relation.name for ep in expand))
        out: dict[str, Any] = {}
        link = f"{self.base}/{entity.set_name}({e.id})"
        if shape.id:
            out["@iot.id"] = e.id
        if shape.self_link:
            out["@iot.selfLink"] = link
        values = e.values
        for name, fmt in shape.props:
            v = values[name]
            out[name] = v if v is None or fmt is None else fmt(v)
        for key, suffix in shape.links:
            out[key] = link + suffix
        for ep in expand:
            name = ep.relation.name
            sub = ep.plan
            target = self.registry.target(ep.relation)
            data = e.expanded.get(name)
            if isinstance(data, Collection) and sub.result_format == "dataArray":
                out[name] = dataarray.format_collection(sub, data, self.base, None)["value"]
                if data.count is not None:
                    out[f"{name}@iot.count"] = data.count
            elif isinstance(data, Collection):
                if data.count is not None:
                    out[f"{name}@iot.count"] = data.count
                out[name] = [self.entity(target, item, sub) for item in data.items]
                if data.more:
                    out[f"{name}@iot.nextLink"] = self._expand_next(link, name, sub)
            else:
                out[name] = None if data is None else self.entity(target, data, sub)
        return out

    def _expand_next(self, link: str, name: str, sub: ReadPlan) -> str:
        return f"{link}/{name}?" + urlencode({"$top": sub.top, "$skip": sub.skip + sub.top}, safe="$", quote_via=quote)

    def collection(self, plan: ReadPlan, data: Collection, next_link: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if data.count is not None:
            out["@iot.count"] = data.count
        if next_link is not None:
            out["@iot.nextLink"] = next_link
        entity = plan.entity
        out["value"] = [self.entity(entity, e, plan) for e in data.items]
        return out

    def refs(self, entity: EntityType, data: Entity | Collection) -> dict[str, Any]:
        if isinstance(data, Entity):
            return {"@iot.selfLink": self.self_link(entity, data.id)}
        out: dict[str, Any] = {}
        if data.count is not None:
            out["@iot.count"] = data.count
        out["value"] = [{"@iot.selfLink": self.self_link(entity, e.id)} for e in data.items]
        return out
