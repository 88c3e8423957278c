"""The built-in payload decoders: bytes → a JSON value, registered through ``stadsdata_payload_decoders``.

* ``json``: a JSON document (UTF-8).
* ``cayenne-lpp``: Cayenne Low Power Payload, the channel-type-value format many LoRaWAN
  devices speak; values named as The Things Stack's CayenneLPP formatter names them
  (``temperature_3``, ``analog_in_1``, ``gps_1`` …), so a mapping reads the same whether the
  network server or stadsdata decoded the bytes.
* ``number``: a number as ASCII text (``21.5``), what simple MQTT sensors publish.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from stadsdata.hookspecs import PayloadDecoder, hookimpl


def decode_json(payload: bytes) -> Any:
    """A JSON document."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def decode_number(payload: bytes) -> int | float:
    """A number written as text, such as ``21.5`` or ``-3``."""
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("not a number: the payload is not ASCII text") from None
    try:
        value: int | float = int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise ValueError(f"not a number: {shown!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


# Cayenne LPP: each value is channel (1 byte), type (1 byte, the IPSO object id - 3200), data (big-endian).
# type -> (name, size in bytes, signed, resolution); multi-value types have their own entries below.
_LPP_SCALARS: dict[int, tuple[str, int, bool, float]] = {
    0: ("digital_in", 1, False, 1),
    1: ("digital_out", 1, False, 1),
    2: ("analog_in", 2, True, 0.01),
    3: ("analog_out", 2, True, 0.01),
    101: ("luminosity", 2, False, 1),
    102: ("presence", 1, False, 1),
    103: ("temperature", 2, True, 0.1),
    104: ("relative_humidity", 1, False, 0.5),
    115: ("barometric_pressure", 2, False, 0.1),
}
_LPP_ACCELEROMETER = 113  # x, y, z: 2 bytes signed each, 0.001 G
_LPP_GYROMETER = 134  # x, y, z: 2 bytes signed each, 0.01 °/s
_LPP_GPS = 136  # latitude, longitude: 3 bytes signed, 0.0001 °; altitude: 3 bytes signed, 0.01 m


def _scaled(raw: int, resolution: float) -> int | float:
    if resolution == 1:
        return raw
    # 2742 * 0.1 is 274.20000000000005 in binary floating point; the format has a fixed number of decimals.
    decimals = max(0, -math.floor(math.log10(resolution)))
    return round(raw * resolution, decimals)


def decode_cayenne_lpp(payload: bytes) -> dict[str, Any]:
    """Cayenne Low Power Payload (myDevices), its standard data types; a value name is ``<type>_<channel>``."""
    if not payload:
        raise ValueError("Cayenne LPP: the payload is empty")
    out: dict[str, Any] = {}
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise ValueError(f"Cayenne LPP: a lone byte at offset {i} where a channel and a type should be")
        channel, kind = payload[i], payload[i + 1]
        i += 2
        value: Any
        if kind in _LPP_SCALARS:
            name, size, signed, resolution = _LPP_SCALARS[kind]
            _need(payload, i, size, name, channel)
            value = _scaled(int.from_bytes(payload[i : i + size], "big", signed=signed), resolution)
            i += size
        elif kind in (_LPP_ACCELEROMETER, _LPP_GYROMETER):
            name, resolution = ("accelerometer", 0.001) if kind == _LPP_ACCELEROMETER else ("gyrometer", 0.01)
            _need(payload, i, 6, name, channel)
            value = {
                axis: _scaled(int.from_bytes(payload[i + 2 * n : i + 2 * n + 2], "big", signed=True), resolution)
                for n, axis in enumerate("xyz")
            }
            i += 6
        elif kind == _LPP_GPS:
            name = "gps"
            _need(payload, i, 9, name, channel)
            lat, lon, alt = (int.from_bytes(payload[i + 3 * n : i + 3 * n + 3], "big", signed=True) for n in range(3))
            value = {
                "latitude": _scaled(lat, 0.0001),
                "longitude": _scaled(lon, 0.0001),
                "altitude": _scaled(alt, 0.01),
            }
            i += 9
        else:
            raise ValueError(f"Cayenne LPP: unknown data type {kind} on channel {channel} at offset {i - 1}")
        out[f"{name}_{channel}"] = value
    return out


def _need(payload: bytes, at: int, size: int, name: str, channel: int) -> None:
    if at + size > len(payload):
        raise ValueError(
            f"Cayenne LPP: {name} on channel {channel} needs {size} bytes at offset {at}, "
            f"the payload has {len(payload) - at}"
        )


@hookimpl
def stadsdata_payload_decoders() -> dict[str, PayloadDecoder]:
    """The built-in payload decoders."""
    return {"json": decode_json, "cayenne-lpp": decode_cayenne_lpp, "number": decode_number}
