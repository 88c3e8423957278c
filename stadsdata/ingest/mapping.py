"""The ingest mapping (``ingest_mapping``): which LoRaWAN device and which MQTT topic feeds which Datastream.

A TOML file (docs/ingest.md has complete examples)::

    [[device]]                         # a LoRaWAN device
    device_id = "well-roombeek-12"     # The Things Stack device id; or dev_eui = "70B3D57BA0000BCE"
    network = "ttn"                    # optional: ttn or chirpstack; unset: either
    payload = "cayenne-lpp"            # optional: decode the raw bytes when the network server sent no decoded payload
    time = "measured_at"               # optional: a field of the decoded payload with the time of measurement
    time_format = "iso"                # iso (default), epoch-s or epoch-ms
    [device.fields]                    # a field of the decoded payload (dotted, or a JSONPath from $) → Datastream
    Temperature = 12
    "battery_voltage.value" = { datastream = 13, scale = 1000 }
    "$.water.level_cm" = { datastream = 14, convert = "cm-to-m" }

    [[topic]]                          # a generic MQTT topic
    name = "meetnet"                   # the dead-letter source is mqtt:<name>
    pattern = "meetnet/{station}/lucht"   # {name}: one topic level, captured; + and a final # as in MQTT
    payload = "json"                   # a payload decoder by name (stadsdata_payload_decoders)
    time = "$.ts"
    [topic.fields]
    "$.pm10" = { by = "station", datastreams = { NL10636 = 21, NL10641 = 22 } }

    [ttn]
    mqtt = true                        # also take uplinks from The Things Stack's MQTT integration

A stored value is ``value * scale + offset`` after the named conversion, if any. Values of
fields without a conversion are stored as they come (a number, text, an object), except text
that is a decimal number, which LoRaWAN codecs often send (``"13.25"``): it is stored as that
number.

A mapping that is wrong is a ``MappingError`` (a ``ConfigError``, so ``stadsdata serve`` stops
with it) naming the file, the entry and the problem. A device or topic that is not in the
mapping is the decoders' business: they raise ``DecodeError`` naming it, so the payload is kept as a
dead letter and can be replayed once the mapping has it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpath_rfc9535

from stadsdata.config import ConfigError
from stadsdata.errors import ValidationError
from stadsdata.hookspecs import PayloadDecoder
from stadsdata.ingest.base import DecodeError
from stadsdata.model.values import MAX_MICROS, MIN_MICROS, parse_instant

NETWORKS = ("ttn", "chirpstack")
TIME_FORMATS = ("iso", "epoch-s", "epoch-ms")
TTN_TOPIC = "v3/+/devices/+/up"
"""The Things Stack MQTT integration: ``v3/{application id}@{tenant}/devices/{device id}/up``."""

CONVERSIONS: dict[str, Callable[[float], float]] = {
    "fahrenheit-to-celsius": lambda v: (v - 32) * 5 / 9,
    "kelvin-to-celsius": lambda v: v - 273.15,
    "mm-to-m": lambda v: v / 1000,
    "cm-to-m": lambda v: v / 100,
    "mv-to-v": lambda v: v / 1000,
    "percent-to-fraction": lambda v: v / 100,
}
"""Named unit conversions, applied before ``scale`` and ``offset``."""

MISSING: Any = object()
"""What a selection finds in a payload that lacks the field."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class MappingError(ConfigError):
    """An ingest mapping file that cannot be used; the message names the file, the entry and the problem."""


# -- selecting values in a decoded payload -------------------------------------------------------------------


def selector(text: str) -> Callable[[Any], Any]:
    """A function that picks ``text`` out of a JSON value, or returns ``MISSING``.

    ``$…`` is a JSONPath (RFC 9535; several matches give a list); anything else is a dotted
    field (``a.b.0.c``), where a member whose name itself contains dots is found too.
    Raises ``ValueError`` for a JSONPath that does not parse.
    """
    if text.startswith("$"):
        try:
            query = jsonpath_rfc9535.compile(text)
        except jsonpath_rfc9535.JSONPathError as exc:
            raise ValueError(f"JSONPath {text!r} does not parse: {exc}") from None

        def by_path(doc: Any) -> Any:
            found = query.find(doc).values()
            if not found:
                return MISSING
            return found[0] if len(found) == 1 else found

        return by_path
    if not text:
        raise ValueError("an empty field name")
    parts = text.split(".")

    def dotted(doc: Any) -> Any:
        if isinstance(doc, dict) and text in doc:
            return doc[text]
        for part in parts:
            if isinstance(doc, dict) and part in doc:
                doc = doc[part]
            elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
                doc = doc[int(part)]
            else:
                return MISSING
        return doc

    return dotted


def parse_time(value: Any, fmt: str, where: str) -> int:
    """A time of a payload in microseconds since 1970 UTC; ``DecodeError`` naming ``where`` when it is none."""
    if fmt == "iso":
        try:
            return parse_instant(value, where)
        except ValidationError as exc:
            raise DecodeError(exc.message) from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecodeError(f"{where}: {value!r} is not a number of {'seconds' if fmt == 'epoch-s' else 'milliseconds'}")
    us = round(value * (1_000_000 if fmt == "epoch-s" else 1_000))
    if not MIN_MICROS <= us <= MAX_MICROS:
        raise DecodeError(f"{where}: {value!r} is outside the years 1 to 9999")
    return us


# -- the parts of a mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldMap:
    """One selected value → a Datastream (fixed, or looked up by a topic capture)."""

    select: str
    datastream: int | None = None
    by: str | None = None
    datastreams: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0
    offset: float = 0.0
    convert: str | None = None
    pick: Callable[[Any], Any] = field(default=lambda doc: MISSING, compare=False, repr=False)

    def datastream_for(self, captures: Mapping[str, str]) -> int:
        if self.datastream is not None:
            return self.datastream
        assert self.by is not None
        key = captures.get(self.by, "")
        found = self.datastreams.get(key)
        if found is None:
            known = ", ".join(sorted(self.datastreams)) or "none"
            raise DecodeError(
                f"field {self.select}: {self.by} {key!r} has no Datastream in the mapping (known: {known})"
            )
        return found

    def value(self, raw: Any) -> Any:
        """The value to store for ``raw``; ``DecodeError`` when a conversion needs a number and ``raw`` is none."""
        if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
            text = raw.strip()
            raw = int(text) if text.lstrip("+-").isdigit() else float(text)
        if self.convert is None and self.scale == 1.0 and self.offset == 0.0:
            return raw
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:59] + "…"
            raise DecodeError(f"field {self.select}: {shown} is not a number, and the mapping converts it")
        value = float(raw)
        if self.convert is not None:
            value = CONVERSIONS[self.convert](value)
        value = value * self.scale + self.offset
        return float(f"{value:.12g}")  # 0.1 * 9 is 0.9, not 0.9000000000000001


@dataclass(frozen=True)
class TimeField:
    """Where a payload says when it was measured."""

    select: str
    format: str = "iso"
    pick: Callable[[Any], Any] = field(default=lambda doc: MISSING, compare=False, repr=False)

    def read(self, doc: Any) -> int:
        raw = self.pick(doc)
        if raw is MISSING:
            raise DecodeError(f"the time field {self.select} is not in the payload")
        return parse_time(raw, self.format, f"time field {self.select}")


@dataclass(frozen=True)
class Device:
    """A LoRaWAN device of the mapping."""

    label: str
    device_id: str | None = None
    dev_eui: str | None = None
    network: str | None = None
    payload: str | None = None
    decode_payload: PayloadDecoder | None = field(default=None, compare=False, repr=False)
    fields: tuple[FieldMap, ...] = ()
    time: TimeField | None = None


@dataclass(frozen=True)
class TopicRule:
    """A generic MQTT topic pattern and what its payloads hold."""

    name: str
    pattern: str
    topic_filter: str
    captures: tuple[str, ...]
    regex: re.Pattern[str] = field(compare=False, repr=False)
    payload: str = "json"
    decode_payload: PayloadDecoder | None = field(default=None, compare=False, repr=False)
    fields: tuple[FieldMap, ...] = ()
    time: TimeField | None = None
    qos: int = 1

    @property
    def source(self) -> str:
        return f"mqtt:{self.name}"

    def match(self, topic: str) -> dict[str, str] | None:
        """The captures of ``topic``, or None when it does not match."""
        m = self.regex.fullmatch(topic)
        return None if m is None else {k: v for k, v in m.groupdict().items() if not k.startswith("_")}


@dataclass(frozen=True)
class IngestMapping:
    """The whole mapping file, checked."""

    path: str | None = None
    devices: tuple[Device, ...] = ()
    topics: tuple[TopicRule, ...] = ()
    ttn_mqtt: bool = False
    ttn_topic: str = TTN_TOPIC
    _by_id: dict[tuple[str, str], Device] = field(default_factory=dict, compare=False, repr=False)
    _by_eui: dict[tuple[str, str], Device] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for d in self.devices:
            for network in (d.network,) if d.network else NETWORKS:
                if d.device_id is not None:
                    self._by_id[(network, d.device_id)] = d
                if d.dev_eui is not None:
                    self._by_eui[(network, d.dev_eui)] = d

    def device(self, network: str, device_id: str | None, dev_eui: str | None) -> Device | None:
        """The device of an uplink from ``network``, by its device id (The Things Stack) or DevEUI."""
        if device_id is not None and (network, device_id) in self._by_id:
            return self._by_id[(network, device_id)]
        if dev_eui is not None:
            return self._by_eui.get((network, normal_eui(dev_eui)))
        return None

    def where(self) -> str:
        return (
            f"ingest mapping {self.path}" if self.path else "the ingest mapping (no ingest_mapping file is configured)"
        )


def normal_eui(text: str) -> str:
    """A DevEUI as 16 upper-case hex digits (separators dropped), as both network servers' consoles show it."""
    return re.sub(r"[\s:-]", "", text).upper()


# -- reading the file ---------------------------------------------------------------------------------------------


def load(path: str | None, decoders: Mapping[str, PayloadDecoder] | None = None) -> IngestMapping:
    """The mapping of the TOML file ``path`` (None: an empty mapping); ``decoders``: the payload decoders by name
    (default: those of the installed plugins). Raises ``MappingError``."""
    if path is None:
        return IngestMapping()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise MappingError(f"ingest mapping {path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"ingest mapping {path} is not valid TOML: {exc}") from None
    return parse(doc, path, decoders)


def parse(doc: dict[str, Any], path: str, decoders: Mapping[str, PayloadDecoder] | None = None) -> IngestMapping:
    """The mapping of a parsed TOML document; ``path`` names it in messages."""
    where = f"ingest mapping {path}"
    if decoders is None:
        from stadsdata.plugins import PluginError, payload_decoders

        try:
            decoders = payload_decoders()
        except PluginError as exc:
            raise MappingError(f"{where}: the payload decoders of the installed plugins: {exc}") from None
    _only(doc, {"device", "topic", "ttn"}, where)
    devices = [
        _device(d, f"{where}, [[device]] {n + 1}", decoders) for n, d in enumerate(_tables(doc, "device", where))
    ]
    topics = [_topic(t, f"{where}, [[topic]] {n + 1}", decoders) for n, t in enumerate(_tables(doc, "topic", where))]
    seen: dict[tuple[str, str, str], str] = {}
    for d in devices:
        for kind, ident in (("device_id", d.device_id), ("dev_eui", d.dev_eui)):
            if ident is None:
                continue
            for network in (d.network,) if d.network else NETWORKS:
                if (network, kind, ident) in seen:
                    raise MappingError(
                        f"{where}: {kind} {ident!r} is mapped twice ({seen[(network, kind, ident)]} and {d.label})"
                    )
                seen[(network, kind, ident)] = d.label
    names = [t.name for t in topics]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MappingError(f"{where}: topic name(s) {', '.join(twice)} used twice; each [[topic]] needs its own name")
    ttn = doc.get("ttn", {})
    if not isinstance(ttn, dict):
        raise MappingError(f"{where}: [ttn] must be a table")
    _only(ttn, {"mqtt", "topic"}, f"{where}, [ttn]")
    mqtt = ttn.get("mqtt", False)
    if not isinstance(mqtt, bool):
        raise MappingError(f"{where}, [ttn]: mqtt must be true or false")
    ttn_topic = ttn.get("topic", TTN_TOPIC)
    if not isinstance(ttn_topic, str) or not ttn_topic.endswith("/up"):
        raise MappingError(f"{where}, [ttn]: topic must be an MQTT filter for uplinks, such as {TTN_TOPIC!r}")
    return IngestMapping(path, tuple(devices), tuple(topics), mqtt, ttn_topic)


def _tables(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    found = doc.get(key, [])
    if not isinstance(found, list) or not all(isinstance(t, dict) for t in found):
        raise MappingError(f"{where}: {key} must be written as [[{key}]] tables")
    return found


def _only(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _text(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise MappingError(f"{where}: {key} must be a non-empty string")
    return value


def _decoder(name: str | None, where: str, decoders: Mapping[str, PayloadDecoder]) -> PayloadDecoder | None:
    if name is None:
        return None
    if name not in decoders:
        raise MappingError(f"{where}: payload {name!r} is no payload decoder; installed: {', '.join(sorted(decoders))}")
    return decoders[name]


def _time(table: dict[str, Any], where: str) -> TimeField | None:
    select = _text(table, "time", where)
    fmt = _text(table, "time_format", where, "iso")
    assert fmt is not None
    if fmt not in TIME_FORMATS:
        raise MappingError(f"{where}: time_format {fmt!r}: use one of {', '.join(TIME_FORMATS)}")
    if select is None:
        if "time_format" in table:
            raise MappingError(f"{where}: time_format is set but time (the field with the time) is not")
        return None
    try:
        return TimeField(select, fmt, selector(select))
    except ValueError as exc:
        raise MappingError(f"{where}: time: {exc}") from None


def _fields(table: dict[str, Any], where: str, captures: tuple[str, ...] = ()) -> tuple[FieldMap, ...]:
    fields = table.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise MappingError(f"{where}: needs [fields]: a field of the payload = a Datastream id, e.g. Temperature = 12")
    out = []
    for select, spec in fields.items():
        at = f"{where}, field {select!r}"
        try:
            pick = selector(select)
        except ValueError as exc:
            raise MappingError(f"{at}: {exc}") from None
        if isinstance(spec, int) and not isinstance(spec, bool):
            out.append(FieldMap(select, _id(spec, at), pick=pick))
            continue
        if not isinstance(spec, dict):
            raise MappingError(f"{at}: must be a Datastream id or a table such as {{ datastream = 12, scale = 0.01 }}")
        _only(spec, {"datastream", "by", "datastreams", "scale", "offset", "convert"}, at)
        convert = _text(spec, "convert", at)
        if convert is not None and convert not in CONVERSIONS:
            raise MappingError(f"{at}: convert {convert!r}: use one of {', '.join(CONVERSIONS)}")
        scale, offset = _number(spec, "scale", 1.0, at), _number(spec, "offset", 0.0, at)
        if "datastream" in spec:
            if "datastreams" in spec or "by" in spec:
                raise MappingError(f"{at}: give datastream (one id) or by and datastreams (a lookup), not both")
            out.append(FieldMap(select, _id(spec["datastream"], at), None, {}, scale, offset, convert, pick))
            continue
        table_ids = spec.get("datastreams")
        if not isinstance(table_ids, dict) or not table_ids:
            raise MappingError(
                f'{at}: needs datastream = <id>, or by = "<capture>" with datastreams = {{ value = id }}'
            )
        by = _text(spec, "by", at, captures[0] if len(captures) == 1 else None)
        if by is None or by not in captures:
            shown = ", ".join(captures) or "none (it has no {name} level)"
            raise MappingError(f"{at}: by names a capture of the topic pattern; its captures: {shown}")
        ids = {str(k): _id(v, f"{at}, datastreams.{k}") for k, v in table_ids.items()}
        out.append(FieldMap(select, None, by, ids, scale, offset, convert, pick))
    return tuple(out)


def _id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MappingError(f"{where}: a Datastream id is a positive integer (its @iot.id), not {value!r}")
    return value


def _number(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MappingError(f"{where}: {key} must be a number")
    return float(value)


def _device(table: dict[str, Any], where: str, decoders: Mapping[str, PayloadDecoder]) -> Device:
    _only(table, {"device_id", "dev_eui", "network", "payload", "time", "time_format", "fields"}, where)
    device_id = _text(table, "device_id", where)
    dev_eui = _text(table, "dev_eui", where)
    if device_id is None and dev_eui is None:
        raise MappingError(f"{where}: needs device_id (The Things Stack) or dev_eui (either network server)")
    if dev_eui is not None:
        dev_eui = normal_eui(dev_eui)
        if not re.fullmatch(r"[0-9A-F]{16}", dev_eui):
            raise MappingError(f"{where}: dev_eui {table['dev_eui']!r} is not 16 hexadecimal digits")
    network = _text(table, "network", where)
    if network is not None and network not in NETWORKS:
        raise MappingError(f"{where}: network {network!r}: use ttn or chirpstack (or leave it out for either)")
    if device_id is not None and network == "chirpstack":
        raise MappingError(f"{where}: ChirpStack devices are found by dev_eui; device_id is The Things Stack's")
    where = f"{where} ({device_id or dev_eui})"
    payload = _text(table, "payload", where)
    return Device(
        label=device_id or dev_eui or "",
        device_id=device_id,
        dev_eui=dev_eui,
        network=network,
        payload=payload,
        decode_payload=_decoder(payload, where, decoders),
        fields=_fields(table, where),
        time=_time(table, where),
    )


_CAPTURE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _topic(table: dict[str, Any], where: str, decoders: Mapping[str, PayloadDecoder]) -> TopicRule:
    _only(table, {"name", "pattern", "payload", "time", "time_format", "fields", "qos"}, where)
    name = _text(table, "name", where)
    if name is None or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise MappingError(f"{where}: needs a name of letters, digits, '.', '_' or '-' (the source is mqtt:<name>)")
    where = f"{where} ({name})"
    pattern = _text(table, "pattern", where)
    if pattern is None:
        raise MappingError(
            f"{where}: needs pattern, an MQTT topic with {{name}} levels, e.g. meetnet/{{station}}/lucht"
        )
    topic_filter, regex, captures = compile_pattern(pattern, where)
    payload = _text(table, "payload", where, "json")
    assert payload is not None
    qos = table.get("qos", 1)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise MappingError(f"{where}: qos must be 0, 1 or 2")
    return TopicRule(
        name=name,
        pattern=pattern,
        topic_filter=topic_filter,
        captures=captures,
        regex=regex,
        payload=payload,
        decode_payload=_decoder(payload, where, decoders),
        fields=_fields(table, where, captures),
        time=_time(table, where),
        qos=qos,
    )


def compile_pattern(pattern: str, where: str = "pattern") -> tuple[str, re.Pattern[str], tuple[str, ...]]:
    """A topic pattern → its MQTT subscription filter, a regex with a group per capture, the capture names.

    ``{name}`` is one level (``+`` in the filter) whose value is captured; ``+`` one level and a
    final ``#`` any remaining levels, as in MQTT, uncaptured.
    """
    levels = pattern.split("/")
    if not pattern or pattern.startswith("$"):
        raise MappingError(f"{where}: pattern {pattern!r} must be a topic, not empty or a $SYS topic")
    filters: list[str] = []
    parts: list[str | None] = []
    captures: list[str] = []
    for n, level in enumerate(levels):
        m = _CAPTURE.fullmatch(level)
        if m:
            name = m.group(1)
            if name in captures:
                raise MappingError(f"{where}: pattern {pattern!r} captures {{{name}}} twice")
            captures.append(name)
            filters.append("+")
            parts.append(f"(?P<{name}>[^/]*)")
        elif level == "+":
            filters.append("+")
            parts.append("[^/]*")
        elif level == "#":
            if n != len(levels) - 1:
                raise MappingError(f"{where}: pattern {pattern!r}: # may only be the last level")
            filters.append("#")
            parts.append(None)
        elif any(c in level for c in "+#{}"):
            raise MappingError(
                f"{where}: pattern {pattern!r}: level {level!r} mixes text with a wildcard; "
                "a level is text, +, #, or {name}"
            )
        else:
            filters.append(level)
            parts.append(re.escape(level))
    body = "/".join(p for p in parts if p is not None)
    if parts and parts[-1] is None:  # '#' also matches the parent level itself, as in MQTT
        body = (body + "(?:/.*)?") if body else ".*"
    return "/".join(filters), re.compile(body), tuple(captures)
