"""Entities and collections → SensorThings JSON, generic over the registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from stadsdata.api import dataarray
from stadsdata.model.entities import EntityType, Kind, Registry
from stadsdata.model.values import _clock, format_instant, format_interval
from stadsdata.query.ast import Bucket, QueryOptions
from stadsdata.query.plan import ReadPlan
from stadsdata.query.render import render_options
from stadsdata.store import timebucket
from stadsdata.store.base import Collection, Entity


def _formatter(kind: Kind) -> Callable[[Any], Any] | None:
    if kind is Kind.INSTANT:
        return format_instant
    if kind is Kind.INTERVAL:
        return lambda v: format_interval(*v)
    if kind is Kind.INSTANT_OR_INTERVAL:
        return lambda v: format_instant(v[0]) if v[1] is None else format_interval(v[0], v[1])
    return None


@lru_cache(maxsize=64)
def _bucket_formatter(zone: str) -> Callable[[int], str]:
    """Bucket starts in ``zone`` with its offset (``2026-03-29T00:00:00+01:00``); in UTC with a ``Z``.

    A year of hourly buckets is 8,760 of them per response: the date and offset are looked up once per local day
    (``_day_span``), the time of day is the cached clock text of ``format_instant``.
    """
    if zone == "UTC":
        return format_instant
    tz = ZoneInfo(zone)
    span = (0, 0, "", "")  # [start, end) of a local day that begins at midnight: its date and offset as text

    def slow(us: int) -> str:
        seconds, micros = divmod(us, 1_000_000)
        local = dt.datetime.fromtimestamp(seconds, tz)  # half the time of epoch + timedelta, astimezone
        return local.replace(microsecond=micros).isoformat() if micros else local.isoformat()

    def fmt(us: int) -> str:
        nonlocal span
        start, end, date, suffix = span
        if not start <= us < end:
            try:
                found = _day_span(tz, zone, us)
            except (OverflowError, ValueError):
                found = None
            if found is None:
                return slow(us)
            span = found
            start, end, date, suffix = found
        seconds, micros = divmod(us - start, 1_000_000)
        if micros:
            return f"{date}{_clock(seconds)}.{micros:06d}{suffix}"
        return date + _clock(seconds) + suffix

    return fmt


def _day_span(tz: ZoneInfo, zone: str, us: int) -> tuple[int, int, str, str] | None:
    """The local day of ``us`` in ``tz``: [start, end) in µs, its date (``2026-03-29T``) and UTC offset
    (``+01:00``) as ``isoformat`` writes them; None on a day whose offset changes or that does not begin at 00:00."""
    start, end = timebucket.local_day(us, zone)
    if not start <= us < end:
        return None
    first = dt.datetime.fromtimestamp(start // 1_000_000, tz)
    last = dt.datetime.fromtimestamp((end - 1) // 1_000_000, tz)
    midnight = (first.hour, first.minute, first.second) == (0, 0, 0)
    if start % 1_000_000 or first.utcoffset() != last.utcoffset() or not midnight:
        return None
    text = first.isoformat()
    return start, end, text[:11], text[19:]


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


_FORMAT_TEMPLATES = {
    Kind.INSTANT: "(None if (x := v[{name!r}]) is None else _instant(x))",
    Kind.INTERVAL: "(None if (x := v[{name!r}]) is None else _interval(x[0], x[1]))",
    Kind.INSTANT_OR_INTERVAL: "(None if (x := v[{name!r}]) is None else "
    "_instant(x[0]) if x[1] is None else _interval(x[0], x[1]))",
}


@lru_cache(maxsize=1024)
def _writer(
    entity: EntityType, select: tuple[str, ...] | None, expanded: tuple[str, ...], base: str
) -> Callable[[Entity], dict[str, Any]]:
    """A function from an entity to its JSON object (without expansions), generated once per shape and base URL.

    Every entity of every response goes through it; one dict display instead of a loop per member.
    """
    shape = _shape(entity, select, expanded)
    members = []
    if shape.id:
        members.append("'@iot.id': e.id")
    if shape.self_link:
        members.append("'@iot.selfLink': link")
    for name, fmt in shape.props:
        kind = entity.property(name).kind  # type: ignore[union-attr]
        template = _FORMAT_TEMPLATES.get(kind, "v[{name!r}]") if fmt is not None else "v[{name!r}]"
        members.append(f"{name!r}: " + template.format(name=name))
    members.extend(f"{key!r}: link + {suffix!r}" for key, suffix in shape.links)
    prefix = f"{base}/{entity.set_name}("
    source = f"lambda e: (lambda v, link: {{{', '.join(members)}}})(e.values, {prefix!r} + str(e.id) + ')')"
    scope = {"_instant": format_instant, "_interval": format_interval}
    omit = tuple(p.name for p in entity.properties if p.omit_null and (select is None or p.name in select))
    if omit:
        write = eval(source, scope)  # noqa: S307 - as below

        def without_nulls(e: Entity) -> dict[str, Any]:
            out: dict[str, Any] = write(e)
            for name in omit:
                if out[name] is None:
                    del out[name]
            return out

        return without_nulls
    return eval(source, scope)  # type: ignore[no-any-return]  # noqa: S307 - registry names and fixed templates


@lru_cache(maxsize=256)
def _next_query(options: QueryOptions, top: int, skip: int) -> str:
    """The query string of an expanded collection's next page; the same for every entity of a response."""
    params = {**render_options(options), "$top": str(top), "$skip": str(skip)}
    return urlencode(params, safe="$", quote_via=quote)


class Serializer:
    """Turns store results into response bodies; ``base`` is the service root URL (…/v1.1)."""

    def __init__(self, registry: Registry, base: str) -> None:
        self.registry = registry
        self.base = base.rstrip("/")
        self._plans: dict[int, tuple[ReadPlan, Callable[[Entity], dict[str, Any]], Any]] = {}

    def self_link(self, entity: EntityType, id_: int) -> str:
        return f"{self.base}/{entity.set_name}({id_})"

    def entity(self, entity: EntityType, e: Entity, plan: ReadPlan | None = None) -> dict[str, Any]:
        if plan is None or not plan.expand:
            return _writer(entity, None if plan is None else plan.select, (), self.base)(e)
        write, expansions = self._expanding(entity, plan)
        out = write(e)
        link = f"{self.base}/{entity.set_name}({e.id})"
        for name, sub, target, next_query in expansions:
            data = e.expanded.get(name)
            if isinstance(data, Collection) and sub.result_format == "dataArray":
                out[name] = dataarray.format_collection(sub, data, self.base, None)["value"]
                if data.count is not None:
                    out[f"{name}@iot.count"] = data.count
                if data.more:
                    out[f"{name}@iot.nextLink"] = f"{link}/{name}?{next_query}"
            elif isinstance(data, Collection):
                if data.count is not None:
                    out[f"{name}@iot.count"] = data.count
                out[name] = self.entities(target, data.items, sub)
                if data.more:
                    out[f"{name}@iot.nextLink"] = f"{link}/{name}?{next_query}"
            else:
                out[name] = None if data is None else self.entity(target, data, sub)
        return out

    def _expanding(
        self, entity: EntityType, plan: ReadPlan
    ) -> tuple[Callable[[Entity], dict[str, Any]], list[tuple[str, ReadPlan, EntityType, str]]]:
        """The writer and the expansions of entities under ``plan``: worked out once per response,
        not once per entity (a listing of 1,000 Datastreams with their latest Observation)."""
        found = self._plans.get(id(plan))
        if found is None or found[0] is not plan:
            expanded = tuple(ep.relation.name for ep in plan.expand)
            expansions = [
                (
                    ep.relation.name,
                    ep.plan,
                    self.registry.target(ep.relation),
                    _next_query(ep.options, ep.plan.top, ep.plan.skip + ep.plan.top),
                )
                for ep in plan.expand
            ]
            found = self._plans[id(plan)] = (plan, _writer(entity, plan.select, expanded, self.base), expansions)
        return found[1], found[2]

    def collection(self, plan: ReadPlan, data: Collection, next_link: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if data.count is not None:
            out["@iot.count"] = data.count
        if next_link is not None:
            out["@iot.nextLink"] = next_link
        out["value"] = self.entities(plan.entity, data.items, plan)
        return out

    def entities(self, entity: EntityType, items: list[Entity], plan: ReadPlan) -> list[dict[str, Any]]:
        if plan.expand:
            return [self.entity(entity, e, plan) for e in items]
        write = _writer(entity, plan.select, (), self.base)
        return [write(e) for e in items]

    def aggregated(self, plan: ReadPlan, data: Collection, next_link: str | None) -> dict[str, Any]:
        """The groups of a ``$apply``: bucket starts as ISO 8601 in the bucket's time zone,
        a grouped path such as ``Datastream/@iot.id`` nested as OData writes it (``{"Datastream": {"@iot.id": 1}}``)."""
        assert plan.apply is not None
        columns: list[tuple[str, Callable[[Any], Any] | None]] = [
            (k.alias, _bucket_formatter(k.value.zone) if isinstance(k.value, Bucket) else None)
            for k in plan.apply.groupby
        ] + [(a.alias, None) for a in plan.apply.aggregates]
        if all("/" not in name for name, _ in columns):  # flat rows, the common case: one dict each
            formatted = [(key, f) for key, f in columns if f is not None]
            rows = []
            for item in data.items:
                flat = dict(item.values)
                for key, f in formatted:
                    if (v := flat[key]) is not None:
                        flat[key] = f(v)
                rows.append(flat)
        else:
            paths = [(name, fmt, name.split("/")) for name, fmt in columns]
            rows = []
            for item in data.items:
                row: dict[str, Any] = {}
                for name, fmt, (*outer, last) in paths:
                    value = item.values[name]
                    if fmt is not None and value is not None:
                        value = fmt(value)
                    target = row
                    for seg in outer:
                        target = target.setdefault(seg, {})
                    target[last] = value
                rows.append(row)
        out: dict[str, Any] = {}
        if data.count is not None:
            out["@iot.count"] = data.count
        if next_link is not None:
            out["@iot.nextLink"] = next_link
        out["value"] = rows
        return out

    def refs(self, entity: EntityType, data: Entity | Collection, next_link: str | None = None) -> dict[str, Any]:
        if isinstance(data, Entity):
            return {"@iot.selfLink": self.self_link(entity, data.id)}
        out: dict[str, Any] = {}
        if data.count is not None:
            out["@iot.count"] = data.count
        if next_link is not None:
            out["@iot.nextLink"] = next_link
        out["value"] = [{"@iot.selfLink": self.self_link(entity, e.id)} for e in data.items]
        return out
