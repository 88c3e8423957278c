"""Topics: parsed with the path and $select parsers of URLs; what is no topic says why."""

from __future__ import annotations

import pytest

from stadsdata.model.entities import sensing_registry
from stadsdata.mqtt.intake import topic_matches
from stadsdata.mqtt.publisher import covers_sta
from stadsdata.mqtt.topics import TopicError, default_topics, parse_create_topic, parse_topic

REGISTRY = sensing_registry()


def test_subscription_topics() -> None:
    t = parse_topic(REGISTRY, "v1.1/Observations")
    assert (t.kind, t.entity.name, t.plan.select) == ("set", "Observation", None)
    t = parse_topic(REGISTRY, "v1.1/Things(4)")
    assert (t.kind, t.id) == ("entity", 4)
    t = parse_topic(REGISTRY, "v1.1/Things(4)/name")
    assert (t.kind, t.id, t.property and t.property.name) == ("property", 4, "name")
    t = parse_topic(REGISTRY, "v1.1/Datastreams(3)/Observations")
    assert t.kind == "navigation" and t.parent and t.parent[1] == 3 and t.via and t.via.name == "Datastream"
    t = parse_topic(REGISTRY, "v1.1/Observations?$select=result,phenomenonTime")
    assert t.plan.select is not None and set(t.plan.select) >= {"result", "phenomenonTime"}


@pytest.mark.parametrize(
    ("topic", "says"),
    [
        ("Observations", "starts with v1.1/"),
        ("v1.1/Obsevations", "no entity set 'Obsevations'"),
        ("v1.1/Things(1)/colour", "no property or relation 'colour'"),
        ("v1.1/Observations?$top=3", "only $select applies"),
        ("v1.1/Observations?$select=colour", "colour"),
        ("v1.1/Things(1)/Datastreams(2)/Observations", "deeper paths are not published"),
        ("v1.1/Things/+", "no wildcards"),
        ("v1.1/Things(1)/$ref", "$ref and $value are no topics"),
    ],
)
def test_what_is_no_topic_says_why(topic: str, says: str) -> None:
    with pytest.raises(TopicError, match=None) as caught:
        parse_topic(REGISTRY, topic)
    assert says in str(caught.value)


def test_create_topics() -> None:
    for topic in (
        "v1.1/Observations",
        "v1.1/Datastreams(1)/Observations",
        "v1.1/MultiDatastreams(1)/Observations",
        "v1.1/FeaturesOfInterest(1)/Observations",
    ):
        assert parse_create_topic(REGISTRY, topic).target.name == "Observation"
    for topic in ("v1.1/Things", "v1.1/Observations(1)", "v1.1/Observations?$select=result"):
        with pytest.raises(TopicError, match="Observations are created by publishing to"):
            parse_create_topic(REGISTRY, topic)


def test_default_topics_of_an_observation() -> None:
    observation = REGISTRY.sets["Observations"]
    links = {"Datastream": 3, "MultiDatastream": None, "FeatureOfInterest": 5}
    assert default_topics(REGISTRY, observation, 9, links) == [
        "v1.1/Observations",
        "v1.1/Observations(9)",
        "v1.1/Datastreams(3)/Observations",
        "v1.1/FeaturesOfInterest(5)/Observations",
    ]


def test_filters() -> None:
    assert topic_matches("meetnet/+/lucht", "meetnet/NL1/lucht")
    assert not topic_matches("meetnet/+/lucht", "meetnet/NL1/water")
    assert topic_matches("v3/#", "v3/app/devices/d/up")
    assert not topic_matches("#", "$SYS/broker")
    assert covers_sta("#") and covers_sta("v1.1/#") and covers_sta("+/Things")
    assert not covers_sta("v1.1/Things") and not covers_sta("ttn/#")
