"""Payload decoders of common groundwater well sensors, registered through ``stadsdata_payload_decoders``.

Each turns the raw LoRaWAN payload (``frm_payload``) into a flat JSON object with the unit in the
member's name, so an ingest mapping (docs/ingest.md) can send each member to its Datastream:

* ``decentlab-dl-pr26`` / ``decentlab-dl-pr26-2bar``: Decentlab DL-PR26, a pressure / liquid level
  and temperature sensor (a Keller piezoresistive transducer on a cable). Decentlab's protocol
  version 2: version byte, device id (2 bytes), a 16-bit flag word saying which sensor groups
  follow, then big-endian 16-bit words: pressure and temperature (flag bit 0), battery in mV (bit 1).
  Pressure = (raw - 16384) / 32768 · (Pmax - Pmin) + Pmin bar, temperature = (raw - 384) · 0.003125 - 50 °C.
  Pmin and Pmax are the device's range, printed on it: 0-1 bar is Decentlab's default; a well
  sensor measuring absolute pressure (water plus air) is usually a 0-2 bar one.
  Source: Decentlab's own decoders, github.com/decentlab/decentlab-decoders, ``DL-PR26/``.
* ``dragino-ldds75``: Dragino LDDS75, an ultrasonic distance sensor (5-byte uplink on port 2):
  battery mV (2 bytes, the low 14 bits), distance mm (2 bytes), interrupt flag (1 byte); a distance
  of 0 means no sensor, under 20 mm an invalid reading. Source: The Things Stack device repository
  (github.com/TheThingsNetwork/lorawan-devices ``vendor/dragino/ldds75.js``) and Helium's
  console-decoders ``Dragino/LDDS75/decoder.js``.
* ``milesight-em500-udl``: Milesight EM500-UDL, an ultrasonic distance/level sensor. Channel-type-value
  records, little-endian: battery % (01 75, 1 byte), distance mm (03 82, 2 bytes), distance alarm
  (83 E9: distance, mutation, alarm), history (20 CE: epoch seconds 4 bytes, distance 2 bytes), and
  device attributes on channel FF. Source: github.com/Milesight-IoT/SensorDecoders,
  ``EM_Series/EM500_Series/EM500-UDL/README.md`` (example ``017564 03821E00`` → battery 100, distance 30).

A decoder raises ``ValueError`` with the reason for bytes not in its format; the ingest path keeps
such an uplink as a dead letter.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from stadsdata.hookspecs import PayloadDecoder, hookimpl

DECENTLAB_PROTOCOL = 2


def decentlab_dl_pr26(pmin: float = 0.0, pmax: float = 1.0) -> Callable[[bytes], dict[str, Any]]:
    """A DL-PR26 decoder for a device of the range ``pmin``..``pmax`` bar."""

    def decode(payload: bytes) -> dict[str, Any]:
        if len(payload) < 5:
            raise ValueError(f"Decentlab DL-PR26: {len(payload)} bytes, at least 5 (version, device id, flags)")
        if payload[0] != DECENTLAB_PROTOCOL:
            raise ValueError(f"Decentlab DL-PR26: protocol version {payload[0]}, expected {DECENTLAB_PROTOCOL}")
        if (len(payload) - 5) % 2:
            raise ValueError("Decentlab DL-PR26: the data after the header is not whole 16-bit words")
        device, flags = struct.unpack(">HH", payload[1:5])
        words = list(struct.unpack(f">{(len(payload) - 5) // 2}H", payload[5:]))
        need = (2 if flags & 1 else 0) + (1 if flags & 2 else 0)
        if len(words) != need:
            raise ValueError(
                f"Decentlab DL-PR26: flags 0x{flags:04x} announce {need} words, the payload has {len(words)}"
            )
        out: dict[str, Any] = {"device_id": device}
        if flags & 1:
            raw_p, raw_t = words[0], words[1]
            out["pressure_bar"] = (raw_p - 16384) / 32768 * (pmax - pmin) + pmin
            out["temperature_c"] = round((raw_t - 384) * 0.003125 - 50, 6)
            words = words[2:]
        if flags & 2:
            out["battery_v"] = words[0] / 1000
        return out

    return decode


def decode_dragino_ldds75(payload: bytes) -> dict[str, Any]:
    """Dragino LDDS75 (port 2): battery, distance and the interrupt flag."""
    if len(payload) != 5:
        raise ValueError(f"Dragino LDDS75: {len(payload)} bytes, expected 5 (battery, distance, interrupt)")
    battery_mv = int.from_bytes(payload[0:2], "big") & 0x3FFF
    distance_mm = int.from_bytes(payload[2:4], "big")
    out: dict[str, Any] = {"battery_v": battery_mv / 1000, "interrupt": payload[4]}
    if distance_mm == 0:
        out["status"] = "no sensor"
    elif distance_mm < 20:
        out["status"] = "invalid reading"
    else:
        out["distance_m"] = distance_mm / 1000
    return out


# channel, type -> length of the value in bytes; the ones that carry readings are decoded below.
_EM500_UDL: dict[tuple[int, int], int] = {
    (0x01, 0x75): 1,
    (0x03, 0x82): 2,
    (0x83, 0xE9): 5,
    (0x20, 0xCE): 6,
    (0xFF, 0x01): 1,
    (0xFF, 0x0B): 1,
    (0xFF, 0x16): 8,
    (0xFF, 0x09): 2,
    (0xFF, 0x0A): 2,
    (0xFF, 0x0F): 1,
    (0xFF, 0xFF): 2,
    (0xFF, 0xFE): 1,
}


def decode_milesight_em500_udl(payload: bytes) -> dict[str, Any]:
    """Milesight EM500-UDL: battery, distance, distance alarm and history records."""
    if not payload:
        raise ValueError("Milesight EM500-UDL: the payload is empty")
    out: dict[str, Any] = {}
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise ValueError(f"Milesight EM500-UDL: a lone byte at offset {i}")
        channel, kind = payload[i], payload[i + 1]
        size = _EM500_UDL.get((channel, kind))
        if size is None:
            raise ValueError(f"Milesight EM500-UDL: unknown channel 0x{channel:02x} type 0x{kind:02x} at offset {i}")
        value = payload[i + 2 : i + 2 + size]
        if len(value) != size:
            raise ValueError(f"Milesight EM500-UDL: channel 0x{channel:02x} needs {size} bytes at offset {i + 2}")
        if (channel, kind) == (0x01, 0x75):
            out["battery_pct"] = value[0]
        elif (channel, kind) == (0x03, 0x82):
            out["distance_m"] = int.from_bytes(value, "little") / 1000
        elif (channel, kind) == (0x83, 0xE9):
            out["distance_m"] = int.from_bytes(value[0:2], "little") / 1000
            out["distance_change_m"] = int.from_bytes(value[2:4], "little") / 1000
            out["distance_alarm"] = value[4]
        elif (channel, kind) == (0x20, 0xCE):
            out.setdefault("history", []).append(
                {
                    "time": int.from_bytes(value[0:4], "little"),
                    "distance_m": int.from_bytes(value[4:6], "little") / 1000,
                }
            )
        i += 2 + size
    return out


@hookimpl
def stadsdata_payload_decoders() -> dict[str, PayloadDecoder]:
    """The groundwater app's decoders of well sensors."""
    return {
        "decentlab-dl-pr26": decentlab_dl_pr26(0.0, 1.0),
        "decentlab-dl-pr26-2bar": decentlab_dl_pr26(0.0, 2.0),
        "dragino-ldds75": decode_dragino_ldds75,
        "milesight-em500-udl": decode_milesight_em500_udl,
    }
