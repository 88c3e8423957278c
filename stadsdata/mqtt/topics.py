"""SensorThings MQTT topics: what a subscription asks for, and where an Observation may be published.

A topic is a resource path under ``v1.1/`` and, for subscriptions, an optional ``$select``::

    v1.1/Observations                          every Observation created or updated
    v1.1/Observations(7)                       that Observation, when it changes
    v1.1/Things(1)/name                        {"name": …} when the Thing's name is set
    v1.1/Datastreams(3)/Observations           Observations of Datastream 3
    v1.1/Observations?$select=result,phenomenonTime

Paths are parsed by ``stadsdata.query.path.parse_path`` and ``$select`` by the query option
parser, so a topic is checked against the same registry as a URL; errors say what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from stadsdata.errors import STAError
from stadsdata.model.entities import OBSERVATION, EntityType, Property, Registry, Relation
from stadsdata.query.ast import QueryOptions
from stadsdata.query.options import parse_select
from stadsdata.query.path import ResourcePath, Segment, parse_path
from stadsdata.query.plan import OpenPolicy, Paging, ReadPlan, plan_read

PREFIX = "v1.1/"

TopicKind = Literal["set", "entity", "property", "navigation"]


class TopicError(ValueError):
    """A topic under ``v1.1/`` that is no SensorThings topic; the message says why."""


@dataclass(frozen=True)
class Topic:
    """A subscription topic, parsed.

    ``entity``: the type of the entities it reports. ``id``: the one entity (``entity``,
    ``property``). ``parent``: for ``navigation``, the entity it navigates from and ``via``,
    the relation from a reported entity back to that parent.
    """

    text: str
    kind: TopicKind
    entity: EntityType
    plan: ReadPlan
    id: int | None = None
    property: Property | None = None
    parent: tuple[EntityType, int] | None = None
    via: Relation | None = None


def _split(registry: Registry, topic: str) -> tuple[ResourcePath, tuple[str, ...] | None]:
    if not topic.startswith(PREFIX):
        raise TopicError(f"a SensorThings topic starts with {PREFIX}, as in v1.1/Observations")
    if "#" in topic or "+" in topic:
        raise TopicError("a SensorThings topic names one resource; it has no wildcards")
    text, _, query = topic[len(PREFIX) :].partition("?")
    select = None
    if query:
        name, eq, value = query.partition("=")
        if name != "$select" or not eq:
            raise TopicError(f"only $select applies to a topic, as in v1.1/Observations?$select=result; not {query!r}")
        try:
            select = parse_select(unquote(value))
        except STAError as exc:
            raise TopicError(f"$select: {exc.message}") from None
    try:
        path = parse_path(registry, text)
    except STAError as exc:
        raise TopicError(exc.message) from None
    return path, select


def parse_topic(registry: Registry, topic: str) -> Topic:
    """A subscription topic; ``TopicError`` when it is not one this server publishes."""
    path, select = _split(registry, topic)
    if path.ref or path.value:
        raise TopicError("$ref and $value are no topics; subscribe to the entity or its property")
    segments = path.segments
    last = segments[-1]
    entity = last.entity
    target = ResourcePath((Segment(entity, None, None),))
    if path.property is not None and select is not None:
        raise TopicError("$select does not apply to a property topic")
    try:
        plan = plan_read(registry, target, QueryOptions(select=select), OpenPolicy(), Paging())
    except STAError as exc:
        raise TopicError(exc.message) from None
    if len(segments) == 1:
        if path.property is not None:
            assert last.id is not None
            return Topic(topic, "property", entity, plan, last.id, path.property)
        if last.id is None:
            return Topic(topic, "set", entity, plan)
        return Topic(topic, "entity", entity, plan, last.id)
    first = segments[0]
    rel = last.relation
    navigation = len(segments) == 2 and first.id is not None and rel is not None and rel.many and last.id is None
    if navigation and path.property is None and first.id is not None and rel is not None:
        return Topic(topic, "navigation", entity, plan, parent=(first.entity, first.id), via=registry.inverse(rel))
    raise TopicError(
        "a topic is an entity set, an entity, a property of an entity, or one entity's related set, as in "
        "v1.1/Datastreams(3)/Observations; deeper paths are not published"
    )


def parse_create_topic(registry: Registry, topic: str) -> ResourcePath:
    """Where a client may publish an Observation to create it: ``v1.1/Observations``,
    ``v1.1/Datastreams(id)/Observations``, ``v1.1/MultiDatastreams(id)/Observations`` or
    ``v1.1/FeaturesOfInterest(id)/Observations``."""
    path, select = _split(registry, topic)
    segments = path.segments
    if (
        select is not None
        or path.property is not None
        or path.ref
        or path.target is not OBSERVATION
        or not path.is_collection
        or len(segments) > 2
        or (len(segments) == 2 and segments[0].id is None)
    ):
        raise TopicError(
            "Observations are created by publishing to v1.1/Observations, v1.1/Datastreams(id)/Observations, "
            f"v1.1/MultiDatastreams(id)/Observations or v1.1/FeaturesOfInterest(id)/Observations; not {topic}"
        )
    return path


def is_sta_topic(topic: str) -> bool:
    return topic.startswith(PREFIX)


def default_topics(registry: Registry, entity: EntityType, id: int, links: dict[str, int | None]) -> list[str]:
    """The topics published for every change of an entity where subscriptions cannot be seen (an external
    broker) or are wildcards: its set, itself, and the related set of each entity it links to through a
    foreign key (``Datastreams(3)/Observations`` for an Observation of Datastream 3)."""
    topics = [f"{PREFIX}{entity.set_name}", f"{PREFIX}{entity.set_name}({id})"]
    for rel in entity.relations:
        if rel.many:
            continue
        parent_id = links.get(rel.name)
        inverse = registry.inverse(rel)
        if parent_id is not None and inverse.many:
            topics.append(f"{PREFIX}{registry.target(rel).set_name}({parent_id})/{inverse.name}")
    return topics
