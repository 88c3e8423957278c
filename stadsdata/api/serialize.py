"""Entities and collections → SensorThings JSON, generic over the registry."""

from __future__ import annotations

from collections.abc import Callable
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


class Serializer:
    """Turns store results into response bodies; ``base`` is the service root URL (…/v1.1)."""

    def __init__(self, registry: Registry, base: str) -> None:
        self.registry = registry
        self.base = base.rstrip("/")
        self._formats = {t.name: [(p.name, _formatter(p.kind)) for p in t.properties] for t in registry}

    def self_link(self, entity: EntityType, id_: int) -> str:
        return f"{self.base}/{entity.set_name}({id_})"

    def entity(self, entity: EntityType, e: Entity, plan: ReadPlan | None = None) -> dict[str, Any]:
        select = None if plan is None else plan.select
        out: dict[str, Any] = {}
        link = self.self_link(entity, e.id)
        if select is None or "@iot.id" in select or "id" in select:
            out["@iot.id"] = e.id
        if select is None or "@iot.selfLink" in select:
            out["@iot.selfLink"] = link
        values = e.values
        for name, fmt in self._formats[entity.name]:
            if name in values and (select is None or name in select):
                v = values[name]
                out[name] = v if v is None or fmt is None else fmt(v)
        expanded = {ep.relation.name: ep for ep in plan.expand} if plan is not None else {}
        for rel in entity.relations:
            name = rel.name
            if name in expanded:
                sub = expanded[name].plan
                target = self.registry.target(rel)
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
            elif select is None or name in select:
                out[f"{name}@iot.navigationLink"] = f"{link}/{name}"
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
