"""LoRaWAN uplinks from The Things Stack v3 and ChirpStack v4: pure decoders, payload → ``Message``.

The Things Stack sends the same JSON (``ApplicationUp``) to a webhook and on its MQTT
integration (``v3/{application}@{tenant}/devices/{device}/up``); ChirpStack's HTTP integration
posts its ``up`` event (``?event=up``). The device is looked up in the ingest mapping (by
device id or DevEUI); each mapped field of the decoded payload becomes a reading of its
Datastream. The network server's decoded payload (``decoded_payload``, ``object``) is used when
there is one, else the raw bytes (``frm_payload``, ``data``) are decoded with the payload decoder
the mapping names for the device (``cayenne-lpp`` …).

Times. The phenomenon time is when the network received the uplink (The Things Stack:
``uplink_message.received_at``; ChirpStack: ``time``), unless the mapping names a time field of the
decoded payload: then that is the phenomenon time and the reception the result time.

Radio metadata goes into each Observation's ``parameters``: the frame counter and port, the
best RSSI and SNR over the gateways that heard the uplink, the gateways (id, RSSI, SNR), the
frequency in Hz, spreading factor and bandwidth. ``$filter=parameters/rssi lt -115`` finds the
weak links.

Duplicates. The key of an uplink is ``<device>:<frame counter>:<discriminator>``:

* The Things Stack: the discriminator is the network server's reception time
  (``uplink_message.received_at``). Every redelivery of an uplink (a webhook retry, an MQTT
  redelivery, the same uplink through both the webhook and MQTT) carries it unchanged, and two
  different uplinks never share it. The frame counter alone is not enough: it restarts at 0
  after every (re)join and when an ABP device's counters are reset, and ``session_key_id``
  does not help for ABP devices (it stays the same across a counter reset), so a key of
  device, counter and session would drop the new readings of such a device as duplicates.
* ChirpStack: the discriminator is the event's ``deduplicationId``, a UUID that ChirpStack
  gives each uplink once (after merging the copies of several gateways) and that every
  redelivery of the event carries.

Both network servers already drop a frame they have seen (same session, same counter), so the
key only has to recognise a delivery of the same event, and must never merge two uplinks.

Messages that are not uplinks (join-accept, downlink events, status, ack, location) and
uplinks that carry no application data (port 0, MAC commands only) are ignored: the decoder
returns a message without readings and without key, which the sink stores nothing for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson

from stadsdata.ingest.base import DecodeError, Decoder, Message, Reading
from stadsdata.ingest.mapping import MISSING, Device, IngestMapping, parse_time

PATH = "lorawan"
TTN_SOURCE = "ttn"
CHIRPSTACK_SOURCE = "chirpstack"

_TTN_OTHER = (
    "join_accept",
    "downlink_ack",
    "downlink_nack",
    "downlink_sent",
    "downlink_failed",
    "downlink_queued",
    "downlink_queue_invalidated",
    "location_solved",
    "service_data",
)


class MalformedPayload(DecodeError):
    """A payload that is not even the JSON object a network server sends."""


def ignored(source: str) -> Message:
    """What a decoder returns for a message that holds no readings by design (not an uplink)."""
    return Message(source, None, (), PATH)


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"{what}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _object(doc: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: {key} must be an object")
    return value


def _int(doc: dict[str, Any], key: str, what: str) -> int:
    """An integer member; absent is 0, as the protobuf JSON mapping of both servers leaves zeros out."""
    value = doc.get(key, 0)
    if isinstance(value, str) and value.isdigit():  # 64-bit integers are strings in protobuf JSON
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what}: {key} must be an integer, not {value!r}")
    return value


def _time(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise DecodeError(f"{where} is missing or not a time")
    return parse_time(value, "iso", where)


def _bytes(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise DecodeError(f"{where} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{where} is not valid base64") from None


def _unknown(network: str, device_id: str | None, dev_eui: str | None, mapping: IngestMapping) -> DecodeError:
    name = " / ".join(f"{k} {v!r}" for k, v in (("device_id", device_id), ("dev_eui", dev_eui)) if v)
    return DecodeError(
        f"{network} device {name or '(without id)'} is not in {mapping.where()}: add a [[device]] for it, "
        "then replay this dead letter"
    )


def _readings(
    device: Device,
    decoded: Any,
    received: int,
    parameters: dict[str, Any],
) -> tuple[Reading, ...]:
    """The readings of the mapped fields of ``decoded``; ``DecodeError`` when none is there."""
    phenomenon, result_time = received, None
    if device.time is not None:
        phenomenon, result_time = device.time.read(decoded), received
    readings = []
    for f in device.fields:
        raw = f.pick(decoded)
        if raw is MISSING or raw is None:
            continue  # uplinks of one device often carry different fields (ports, alarms, status frames)
        assert f.datastream is not None
        readings.append(Reading(f.datastream, phenomenon, f.value(raw), result_time, parameters))
    if not readings:
        mapped = ", ".join(f.select for f in device.fields)
        has = ", ".join(map(str, decoded)) if isinstance(decoded, dict) else type(decoded).__name__
        raise DecodeError(
            f"device {device.label}: none of the mapped fields ({mapped}) is in the decoded payload, which has: {has}"
        )
    return tuple(readings)


def _decoded(device: Device, given: Any, raw: Any, raw_name: str) -> Any:
    """The decoded payload: the network server's, else the raw bytes through the device's payload decoder."""
    if device.decode_payload is not None and (given is None or given == {}):
        data = _bytes(raw, raw_name)
        try:
            return device.decode_payload(data)
        except ValueError as exc:
            raise DecodeError(f"device {device.label}: payload {device.payload}: {exc}") from None
    if given is None:
        raise DecodeError(
            f"device {device.label}: the network server sent no decoded payload (no payload formatter / codec is "
            f'set for it) and the mapping names no payload decoder: set payload = "cayenne-lpp" (or another) '
            f"for the device, or a formatter in the network server"
        )
    return given


# -- The Things Stack v3 ------------------------------------------------------------------------------------


def decode_tts(mapping: IngestMapping) -> Decoder:
    """The decoder of The Things Stack uplinks (webhook body or MQTT integration payload; ``topic`` None or the
    MQTT topic)."""

    def decode(payload: bytes, topic: str | None) -> Message:
        if topic is not None and not topic.endswith("/up"):
            return ignored(TTN_SOURCE)
        doc = _json_object(payload, "The Things Stack message")
        if "data" in doc and "end_device_ids" not in doc and isinstance(doc["data"], dict):
            doc = doc["data"]  # an event stream envelope ("name": "as.up.data.forward", "data": {...})
        ids = _object(doc, "end_device_ids", "The Things Stack message")
        device_id, dev_eui = ids.get("device_id"), ids.get("dev_eui")
        if not isinstance(device_id, str) or not device_id:
            raise DecodeError("The Things Stack message: end_device_ids.device_id is missing")
        if "uplink_message" not in doc:
            if any(k in doc for k in _TTN_OTHER):
                return ignored(TTN_SOURCE)
            raise DecodeError(
                f"The Things Stack message of device {device_id!r} is no uplink nor any other message type known "
                f"(it has {', '.join(sorted(doc))})"
            )
        up = _object(doc, "uplink_message", "uplink_message")
        f_port = _int(up, "f_port", "uplink_message")
        if f_port == 0 and "frm_payload" not in up and "decoded_payload" not in up:
            return ignored(TTN_SOURCE)  # MAC commands only
        device = mapping.device(TTN_SOURCE, device_id, dev_eui if isinstance(dev_eui, str) else None)
        if device is None:
            raise _unknown("The Things Stack", device_id, dev_eui if isinstance(dev_eui, str) else None, mapping)
        f_cnt = _int(up, "f_cnt", "uplink_message")
        received_text = up.get("received_at", doc.get("received_at"))
        received = _time(received_text, "uplink_message.received_at")
        parameters = {"f_cnt": f_cnt, "f_port": f_port, **_tts_radio(up)}
        decoded = _decoded(device, up.get("decoded_payload"), up.get("frm_payload"), "uplink_message.frm_payload")
        readings = _readings(device, decoded, received, parameters)
        return Message(TTN_SOURCE, f"{device_id}:{f_cnt}:{received_text}", readings, PATH)

    return decode


def _tts_radio(up: dict[str, Any]) -> dict[str, Any]:
    gateways = []
    for rx in up.get("rx_metadata") or ():
        if isinstance(rx, dict):
            ids = _sub(rx, "gateway_ids")
            gateways.append(
                _gateway(ids.get("gateway_id") or ids.get("eui"), rx.get("rssi", rx.get("channel_rssi")), rx.get("snr"))
            )
    settings = _sub(up, "settings")
    lora = _sub(_sub(settings, "data_rate"), "lora")
    frequency = settings.get("frequency")
    if isinstance(frequency, str) and frequency.isdigit():  # a 64-bit integer, so a string in protobuf JSON
        frequency = int(frequency)
    return _radio(gateways, frequency, lora.get("spreading_factor"), lora.get("bandwidth"))


def _sub(doc: Any, key: str) -> dict[str, Any]:
    """``doc[key]`` when both are objects, else an empty one: radio metadata is optional and never a reason to fail."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _gateway(ident: Any, rssi: Any, snr: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in (("id", ident), ("rssi", rssi), ("snr", snr))
        if v is not None and (k == "id" or (isinstance(v, int | float) and not isinstance(v, bool)))
    }


def _radio(gateways: list[dict[str, Any]], frequency: Any, sf: Any, bandwidth: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rssis = [g["rssi"] for g in gateways if "rssi" in g]
    snrs = [g["snr"] for g in gateways if "snr" in g]
    if rssis:
        out["rssi"] = max(rssis)
    if snrs:
        out["snr"] = max(snrs)
    if gateways:
        out["gateways"] = gateways
    for key, value in (("frequency", frequency), ("spreading_factor", sf), ("bandwidth", bandwidth)):
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


# -- ChirpStack v4 ------------------------------------------------------------------------------------------


def decode_chirpstack(mapping: IngestMapping) -> Decoder:
    """The decoder of ChirpStack v4 ``up`` events in JSON (HTTP integration body; on MQTT, ``topic`` is
    ``application/{id}/device/{devEui}/event/up`` and other events are ignored)."""

    def decode(payload: bytes, topic: str | None) -> Message:
        if topic is not None and not topic.endswith("/event/up"):
            return ignored(CHIRPSTACK_SOURCE)
        doc = _json_object(payload, "ChirpStack event")
        info = _object(doc, "deviceInfo", "ChirpStack event")
        dev_eui = info.get("devEui")
        if not isinstance(dev_eui, str) or not dev_eui:
            raise DecodeError("ChirpStack event: deviceInfo.devEui is missing (is this a ChirpStack v4 JSON event?)")
        if not any(k in doc for k in ("rxInfo", "fCnt", "fPort", "data", "object")):
            return ignored(CHIRPSTACK_SOURCE)  # status, join, ack, txack, log, location: no uplink data
        f_port = _int(doc, "fPort", "ChirpStack event")
        if f_port == 0 and "data" not in doc and "object" not in doc:
            return ignored(CHIRPSTACK_SOURCE)
        device = mapping.device(CHIRPSTACK_SOURCE, None, dev_eui)
        if device is None:
            raise _unknown("ChirpStack", None, dev_eui, mapping)
        dedup = doc.get("deduplicationId")
        if not isinstance(dedup, str) or not dedup:
            raise DecodeError(f"ChirpStack event of {dev_eui}: deduplicationId is missing")
        f_cnt = _int(doc, "fCnt", "ChirpStack event")
        received = _time(doc.get("time"), "ChirpStack event: time")
        parameters = {"f_cnt": f_cnt, "f_port": f_port, **_chirpstack_radio(doc)}
        decoded = _decoded(device, doc.get("object"), doc.get("data"), "data")
        readings = _readings(device, decoded, received, parameters)
        return Message(CHIRPSTACK_SOURCE, f"{dev_eui.lower()}:{f_cnt}:{dedup}", readings, PATH)

    return decode


def _chirpstack_radio(doc: dict[str, Any]) -> dict[str, Any]:
    gateways = [
        _gateway(rx.get("gatewayId"), rx.get("rssi"), rx.get("snr"))
        for rx in doc.get("rxInfo") or ()
        if isinstance(rx, dict)
    ]
    tx = _sub(doc, "txInfo")
    lora = _sub(_sub(tx, "modulation"), "lora")
    return _radio(gateways, tx.get("frequency"), lora.get("spreadingFactor"), lora.get("bandwidth"))


DECODERS: dict[str, Callable[[IngestMapping], Decoder]] = {TTN_SOURCE: decode_tts, CHIRPSTACK_SOURCE: decode_chirpstack}
"""The LoRaWAN sources and their decoders."""
