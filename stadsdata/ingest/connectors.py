"""The connectors a configuration sets up, by source: what decodes a dead letter again on replay, and what the
MQTT runtime subscribes to.

Sources: ``ttn`` (The Things Stack, webhook and MQTT integration alike), ``chirpstack``
(ChirpStack v4) and ``mqtt:<rule name>`` for each ``[[topic]]`` of the ingest mapping.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stadsdata.ingest import lorawan
from stadsdata.ingest.base import DecodeError, Decoder, Message, Reading
from stadsdata.ingest.mapping import MISSING, IngestMapping, TopicRule, load
from stadsdata.model.values import now_micros
from stadsdata.settings import Settings

MQTT_PATH = "mqtt"


@dataclass(frozen=True)
class Subscription:
    """An MQTT topic filter the runtime subscribes to, and the decoder of what arrives on it."""

    topic_filter: str
    source: str
    decode: Decoder
    qos: int = 1


def mapping_of(settings: Settings) -> IngestMapping:
    """The ingest mapping of ``settings`` (empty when none is configured); ``MappingError`` when it is wrong."""
    return load(settings.ingest_mapping)


def decoders(settings: Settings) -> dict[str, Decoder]:
    """Source name → the function that turns one of its payloads into a message, for the configured connectors.

    Without an ingest mapping no connector is configured (every device would be unknown), so there is none.
    """
    if settings.ingest_mapping is None:
        return {}
    return decoders_for(mapping_of(settings))


def decoders_for(mapping: IngestMapping) -> dict[str, Decoder]:
    """``decoders`` of a loaded mapping."""
    found = {source: make(mapping) for source, make in lorawan.DECODERS.items()}
    for rule in mapping.topics:
        found[rule.source] = decode_topic(rule)
    return found


def subscriptions(settings: Settings) -> list[Subscription]:
    """What the MQTT runtime subscribes to: The Things Stack's uplinks (when ``[ttn] mqtt = true``) and the topic
    rules of the mapping."""
    return subscriptions_for(mapping_of(settings))


def subscriptions_for(mapping: IngestMapping) -> list[Subscription]:
    """``subscriptions`` of a loaded mapping."""
    subs = []
    if mapping.ttn_mqtt:
        subs.append(Subscription(mapping.ttn_topic, lorawan.TTN_SOURCE, lorawan.decode_tts(mapping)))
    for rule in mapping.topics:
        subs.append(Subscription(rule.topic_filter, rule.source, decode_topic(rule), rule.qos))
    return subs


def decode_topic(rule: TopicRule) -> Decoder:
    """The decoder of a generic topic rule: the payload through the rule's payload decoder, then its fields.

    The key of a message is a digest of its topic and payload when the rule names a time field:
    the same payload on the same topic is then the same measurement, delivered again. Without a
    time field the phenomenon time is the time of arrival and two equal payloads are two
    measurements, so there is no key and no redelivery detection (name a time field where the
    payload has one).
    """

    def decode(payload: bytes, topic: str | None) -> Message:
        if topic is None:
            raise DecodeError(f"topic rule {rule.name}: a message without its MQTT topic cannot be matched")
        captures = rule.match(topic)
        if captures is None:
            raise DecodeError(f"topic {topic!r} does not match the pattern {rule.pattern!r} of topic rule {rule.name}")
        assert rule.decode_payload is not None
        try:
            doc = rule.decode_payload(payload)
        except ValueError as exc:
            raise DecodeError(f"topic {topic}: payload {rule.payload}: {exc}") from None
        # Without a time field, the time of arrival (of decoding, so a replay gets the time of the replay).
        phenomenon = now_micros() if rule.time is None else rule.time.read(doc)
        readings = []
        for f in rule.fields:
            raw = f.pick(doc)
            if raw is MISSING or raw is None:
                continue
            readings.append(Reading(f.datastream_for(captures), phenomenon, f.value(raw)))
        if not readings:
            mapped = ", ".join(f.select for f in rule.fields)
            raise DecodeError(f"topic {topic}: none of the mapped fields ({mapped}) is in the payload")
        key = None
        if rule.time is not None:
            key = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:32]
        return Message(rule.source, key, tuple(readings), MQTT_PATH)

    return decode
