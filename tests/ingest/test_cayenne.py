"""Cayenne Low Power Payload: the examples of its specification, every standard type, and bad input."""

from __future__ import annotations

import pytest

from stadsdata.ingest.decoders import decode_cayenne_lpp, decode_json, decode_number


def lpp(hex_text: str) -> dict[str, object]:
    return decode_cayenne_lpp(bytes.fromhex(hex_text.replace(" ", "")))


def test_the_examples_of_the_specification() -> None:
    # Two temperature sensors: channel 3 27.2 °C, channel 5 25.5 °C.
    assert lpp("03 67 01 10 05 67 00 FF") == {"temperature_3": 27.2, "temperature_5": 25.5}
    # A negative temperature and an accelerometer.
    assert lpp("01 67 FF D7 06 71 04 D2 FB 2E 00 00") == {
        "temperature_1": -4.1,
        "accelerometer_6": {"x": 1.234, "y": -1.234, "z": 0.0},
    }
    # GPS: 42.3519 N, 87.9094 W, 10 m.
    assert lpp("01 88 06 76 5F F2 96 0A 00 03 E8") == {
        "gps_1": {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}
    }


def test_every_scalar_type() -> None:
    assert lpp("01 00 01  02 01 00  03 02 3F 02  04 03 FF 38  05 65 01 F4  06 66 01  07 68 61  08 73 27 97") == {
        "digital_in_1": 1,
        "digital_out_2": 0,
        "analog_in_3": 161.3,  # what The Things Stack's CayenneLPP formatter gives for 01 02 3F 02 on channel 1
        "analog_out_4": -2.0,
        "luminosity_5": 500,
        "presence_6": 1,
        "relative_humidity_7": 48.5,
        "barometric_pressure_8": 1013.5,
    }
    assert lpp("09 86 FF 9C 00 64 00 00") == {"gyrometer_9": {"x": -1.0, "y": 1.0, "z": 0.0}}


@pytest.mark.parametrize(
    ("hex_text", "reason"),
    [
        ("", "the payload is empty"),
        ("03", "a lone byte at offset 0"),
        ("03 67 01", "temperature on channel 3 needs 2 bytes at offset 2, the payload has 1"),
        ("01 88 06 76 5F", "gps on channel 1 needs 9 bytes"),
        ("03 67 01 10 05 FE 00", "unknown data type 254 on channel 5 at offset 5"),
    ],
)
def test_bad_payloads_say_where(hex_text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        lpp(hex_text)


def test_json_and_number() -> None:
    assert decode_json(b'{"pm10": 12.5}') == {"pm10": 12.5}
    with pytest.raises(ValueError, match="not JSON"):
        decode_json(b"{")
    assert decode_number(b" 21.5\n") == 21.5 and decode_number(b"-3") == -3
    for bad, reason in ((b"warm", "not a number: 'warm'"), (b"nan", "not a finite number"), (b"\xff", "not ASCII")):
        with pytest.raises(ValueError, match=reason):
            decode_number(bad)
