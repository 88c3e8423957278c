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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
