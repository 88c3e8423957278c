"""The well sensors' payload decoders on sample payloads from their makers' documentation and codecs."""

from __future__ import annotations

import pytest

from stadsdata.apps.groundwater import sensors
from stadsdata.plugins import new_plugin_manager, payload_decoders


def test_decentlab_dl_pr26_sample_from_decentlab() -> None:
    # The sample payload in Decentlab's own decoder (DL-PR26, Pmin 0, Pmax 1 bar): words 0x3e80, 0x6017, 0x0c7f.
    decoded = sensors.decentlab_dl_pr26()(bytes.fromhex("02016700033e8060170c7f"))
    assert decoded["device_id"] == 0x0167
    assert decoded["pressure_bar"] == pytest.approx((16000 - 16384) / 32768)  # -0.01171875 bar
    assert decoded["temperature_c"] == pytest.approx((24599 - 384) * 0.003125 - 50)  # 25.671875 °C
    assert decoded["battery_v"] == pytest.approx(3.199)


def test_decentlab_battery_only_frame_and_range() -> None:
    assert sensors.decentlab_dl_pr26()(bytes.fromhex("02016700020c7f")) == {"device_id": 0x0167, "battery_v": 3.199}
    # 0-2 bar device: raw 0x8000 is the middle of the range above 16384, i.e. 1.0 bar
    decoded = sensors.decentlab_dl_pr26(0.0, 2.0)(bytes.fromhex("0201670001" + "8000" + "6017"))
    assert decoded["pressure_bar"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("03016700020c7f", "protocol version 3"),
        ("0201670003", "announce 3 words"),
        ("020167", "at least 5"),
    ],
)
def test_decentlab_refuses_what_is_not_its_format(payload: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sensors.decentlab_dl_pr26()(bytes.fromhex(payload))


def test_dragino_ldds75() -> None:
    # battery 0x0CE4 = 3300 mV, distance 0x05DC = 1500 mm, no interrupt
    assert sensors.decode_dragino_ldds75(bytes.fromhex("0CE405DC00")) == {
        "battery_v": 3.3,
        "interrupt": 0,
        "distance_m": 1.5,
    }
    # the top two bits of the battery word are flags, not volts
    assert sensors.decode_dragino_ldds75(bytes.fromhex("CCE405DC00"))["battery_v"] == 3.3
    assert sensors.decode_dragino_ldds75(bytes.fromhex("0CE4000000"))["status"] == "no sensor"
    assert "distance_m" not in sensors.decode_dragino_ldds75(bytes.fromhex("0CE4000F00"))
    with pytest.raises(ValueError, match="expected 5"):
        sensors.decode_dragino_ldds75(bytes.fromhex("0CE405DC"))


def test_milesight_em500_udl_sample_from_milesight() -> None:
    assert sensors.decode_milesight_em500_udl(bytes.fromhex("01756403821E00")) == {
        "battery_pct": 100,
        "distance_m": 0.030,
    }
    # attributes on channel FF are skipped; a history record carries its own time
    history = sensors.decode_milesight_em500_udl(bytes.fromhex("FF0101" + "20CE" + "00E1F565" + "D204"))
    assert history == {"history": [{"time": 0x65F5E100, "distance_m": 1.234}]}
    with pytest.raises(ValueError, match="unknown channel"):
        sensors.decode_milesight_em500_udl(bytes.fromhex("0999"))


def test_decoders_register_through_the_plugin_hook() -> None:
    found = payload_decoders(new_plugin_manager([sensors], entry_points=False))
    assert {"decentlab-dl-pr26", "decentlab-dl-pr26-2bar", "dragino-ldds75", "milesight-em500-udl"} <= set(found)
    assert {"json", "cayenne-lpp"} <= set(found)  # the core's own still there
