"""What every connector hands over, and what the sink promises back.

A connector (LoRaWAN webhook or MQTT integration, generic MQTT topics, files) has two
halves: a pure ``decode`` that turns a payload into a ``Message`` (or raises
``DecodeError`` with the reason), and I/O that receives payloads and gives each message to
``Service.ingest``. The sink commits a message's readings in one transaction together
with its key, so that:

* a message is acknowledged (PUBACK, webhook 2xx, a file chunk's progress) only after
  ``ingest`` returned, that is after the commit;
* a message delivered again (same ``source`` and ``key``) creates nothing the second time;
* a payload that cannot be decoded, or a reading the store refuses, ends up in the
  dead-letter table with its reason (``Service.dead_letter``) instead of stopping the
  connector; an operator lists and replays them (``stadsdata dead-letters``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stadsdata.errors import ValidationError
from stadsdata.model.validate import check_json
from stadsdata.model.values import MAX_MICROS, MIN_MICROS


class DecodeError(ValueError):
    """A payload that is not what the connector takes; the message says why."""


@dataclass(frozen=True)
class Reading:
    """One value for one Datastream.

    Times are microseconds since 1970 UTC (``stadsdata.model.values.to_micros``).
    ``feature_of_interest_id`` None: the Datastream's Thing's Location, as on any create.
    """

    datastream_id: int
    phenomenon_time: int
    result: Any
    result_time: int | None = None
    parameters: dict[str, Any] | None = None
    feature_of_interest_id: int | None = None


@dataclass(frozen=True)
class Message:
    """The readings of one delivery and what identifies it.

    ``source`` names the connector and its instance (``ttn``, ``chirpstack``,
    ``mqtt:<mapping name>``, ``file:<sha256>``); ``key`` identifies the delivery within the
    source (device and frame counter, a file chunk), or None when redelivery cannot be
    recognised.
    """

    source: str
    key: str | None
    readings: tuple[Reading, ...]
    path: str = "http"  # the ingest path for metrics: http, mqtt, lorawan, file


Decoder = Callable[[bytes, str | None], Message]
"""A connector's pure half: a payload (and the MQTT topic it came on, None otherwise) → its message, or
``DecodeError``."""


@dataclass(frozen=True)
class Delivery:
    """What ``Service.ingest`` did with a message, after its commit."""

    created: list[int] = field(default_factory=list)
    duplicate: bool = False  # the key was committed before: nothing created this time
    rejected: list[str] = field(default_factory=list)  # readings refused, with reasons (dead-lettered)


# -- readings the store refused, as a dead letter ----------------------------------------------------

READINGS_PATH = "readings"
"""The ``path`` of dead letters that hold readings (``encode_message``) rather than a connector's payload."""

READING_NAMES = ("phenomenonTime", "result", "resultTime", "parameters")


def reading_problem(r: Reading) -> str | None:
    """Why the store cannot take ``r``, or None."""
    for name, t in (("phenomenonTime", r.phenomenon_time), ("resultTime", r.result_time)):
        if t is not None and (type(t) is not int or not MIN_MICROS <= t <= MAX_MICROS):
            return f"{name} {t!r} is not a time in the years 1 to 9999"
    if r.parameters is not None and not isinstance(r.parameters, dict):
        return "parameters must be a JSON object"
    for name, value in (("result", r.result), ("parameters", r.parameters)):
        try:
            check_json(value, name)
        except ValidationError as exc:
            return exc.message
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if not all(isinstance(k, str) for k in item):
                    return f"{name} has a member whose name is not a string"
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, float) and not math.isfinite(item):
                return f"{name} holds {item}, which JSON cannot represent"
            elif item is not None and not isinstance(item, (str, int, float, bool)):
                return f"{name} holds a {type(item).__name__}, not a JSON value"
    return None


def encode_message(message: Message) -> bytes:
    """A message as JSON, the payload of a ``readings`` dead letter (``decode_message`` reads it back).

    Whatever a reading holds is written: values that are no JSON value as their ``repr``, so
    that an operator sees what arrived.
    """
    return orjson.dumps(
        {
            "source": message.source,
            "key": message.key,
            "path": message.path,
            "readings": [
                {
                    "datastream": r.datastream_id,
                    "phenomenonTime": r.phenomenon_time,
                    "result": r.result,
                    "resultTime": r.result_time,
                    "parameters": r.parameters,
                    "featureOfInterest": r.feature_of_interest_id,
                }
                for r in message.readings
            ],
        },
        option=orjson.OPT_NON_STR_KEYS,
        default=repr,
    )


def decode_message(payload: bytes) -> Message:
    """The message of a ``readings`` dead letter; ``DecodeError`` when it is not one."""
    try:
        doc = orjson.loads(payload)
        readings = tuple(
            Reading(
                datastream_id=r["datastream"],
                phenomenon_time=r["phenomenonTime"],
                result=r["result"],
                result_time=r.get("resultTime"),
                parameters=r.get("parameters"),
                feature_of_interest_id=r.get("featureOfInterest"),
            )
            for r in doc["readings"]
        )
        return Message(doc["source"], doc.get("key"), readings, doc.get("path", "http"))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise DecodeError(f"not a readings message: {exc}") from None
