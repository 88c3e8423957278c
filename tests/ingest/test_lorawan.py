"""The Things Stack v3 and ChirpStack v4 uplinks → readings, on real payloads (tests/fixtures/lorawan/SOURCE.md)."""

from __future__ import annotations

import base64
import datetime as dt
import tomllib
from pathlib import Path

import orjson
import pytest

from stadsdata.ingest.base import DecodeError, Message
from stadsdata.ingest.lorawan import MalformedPayload, decode_chirpstack, decode_tts
from stadsdata.ingest.mapping import IngestMapping, parse
from stadsdata.model.values import to_micros

SAMPLES = Path(__file__).parent.parent / "fixtures" / "lorawan"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def mapping(text: str) -> IngestMapping:
    return parse(tomllib.loads(text), "test.toml")


def at(text: str) -> int:
    return to_micros(dt.datetime.fromisoformat(text))


DOCS = mapping(
    """
    [[device]]
    device_id = "dev1"
    [device.fields]
    temperature = 1
    luminosity = { datastream = 2, convert = "percent-to-fraction" }
    """
)


def test_tts_uplink_gives_a_reading_per_mapped_field_with_radio_parameters() -> None:
    message = decode_tts(DOCS)(sample("tts_docs_uplink.json"), None)
    assert message.source == "ttn" and message.path == "lorawan"
    assert message.key == "dev1:1:2020-02-12T15:15:45.789585559Z"
    t, lum = message.readings
    assert (t.datastream_id, t.result, lum.datastream_id, lum.result) == (1, 1.0, 2, 0.0064)
    assert t.phenomenon_time == at("2020-02-12T15:15:45.789585Z")  # the network server's reception
    assert t.result_time is None
    assert t.parameters == {
        "f_cnt": 1,
        "f_port": 0,  # absent in the sample: protobuf JSON leaves zeros out
        "rssi": -35,
        "snr": 5,
        "gateways": [{"id": "gtw1", "rssi": -35, "snr": 5}],
        "frequency": 868300000,
        "spreading_factor": 7,
        "bandwidth": 125000,
    }


def test_tts_real_device_by_dev_eui_and_the_event_envelope() -> None:
    m = mapping('[[device]]\ndev_eui = "00:25:ca:00:00:00:17:c2"\nfields = { Temperature = 7 }')
    message = decode_tts(m)(sample("tts_ezurio_rs26x_uplink.json"), "v3/thingsboard-ttn-demo@ttn/devices/x/up")
    [r] = message.readings
    assert (r.datastream_id, r.result) == (7, 21.83)
    assert r.parameters is not None and r.parameters["gateways"] == [{"id": "eriks-rg186", "rssi": -69, "snr": 8.25}]
    assert r.parameters["frequency"] == 868100000 and r.parameters["f_cnt"] == 25
    # The same uplink wrapped in an event-stream envelope ("name": "as.up.data.forward", "data": …) decodes the same.
    envelope = orjson.dumps(
        {"name": "as.up.data.forward", "data": orjson.loads(sample("tts_ezurio_rs26x_uplink.json"))}
    )
    assert decode_tts(m)(envelope, None) == message


def test_tts_messages_that_are_no_uplink_are_ignored() -> None:
    decode = decode_tts(DOCS)
    for name in ("tts_docs_join_accept.json", "tts_docs_downlink_ack.json"):
        assert decode(sample(name), None) == Message("ttn", None, (), "lorawan")
    assert decode(sample("tts_docs_uplink.json"), "v3/app1@ttn/devices/dev1/join") == Message(
        "ttn", None, (), "lorawan"
    )


def test_tts_unknown_device_names_it() -> None:
    with pytest.raises(DecodeError, match=r"device_id 'rs261-erik-internal' / dev_eui '0025CA00000017C2' is not in"):
        decode_tts(DOCS)(sample("tts_ezurio_rs26x_uplink.json"), None)


def test_tts_without_decoded_payload_needs_a_payload_decoder() -> None:
    m = mapping('[[device]]\ndevice_id = "03022"\nfields = { battery = 1 }')
    with pytest.raises(DecodeError, match=r"no decoded payload .* set payload = \"cayenne-lpp\""):
        decode_tts(m)(sample("tts_decentlab_dl_pr26_uplink.json"), None)
    # With a decoder that does not fit the bytes (Decentlab's format is not Cayenne LPP), the reason says so.
    m = mapping('[[device]]\ndevice_id = "03022"\npayload = "cayenne-lpp"\nfields = { battery = 1 }')
    with pytest.raises(
        DecodeError, match=r"payload cayenne-lpp: Cayenne LPP: unknown data type 23 on channel 96 at offset 8"
    ):
        decode_tts(m)(sample("tts_decentlab_dl_pr26_uplink.json"), None)


def test_tts_raw_bytes_through_cayenne_lpp() -> None:
    doc = orjson.loads(sample("tts_decentlab_dl_pr26_uplink.json"))
    # synthetic: the real uplink's bytes replaced by the Cayenne LPP specification's example (27.2 °C, 25.5 °C)
    doc["uplink_message"]["frm_payload"] = base64.b64encode(bytes.fromhex("03670110056700FF")).decode()
    m = mapping('[[device]]\ndevice_id = "03022"\npayload = "cayenne-lpp"\nfields = { temperature_3 = 4 }')
    [r] = decode_tts(m)(orjson.dumps(doc), None).readings
    assert (r.datastream_id, r.result) == (4, 27.2)
    assert r.parameters is not None and r.parameters["spreading_factor"] == 11 and r.parameters["rssi"] == -16


def test_a_time_field_of_the_payload_is_the_phenomenon_time() -> None:
    doc = orjson.loads(sample("tts_docs_uplink.json"))
    doc["uplink_message"]["decoded_payload"]["measured"] = 1581520500  # synthetic: a device that sends its clock
    m = mapping(
        '[[device]]\ndevice_id = "dev1"\ntime = "measured"\ntime_format = "epoch-s"\nfields = { temperature = 1 }'
    )
    [r] = decode_tts(m)(orjson.dumps(doc), None).readings
    assert r.phenomenon_time == at("2020-02-12T15:15:00+00:00")
    assert r.result_time == at("2020-02-12T15:15:45.789585Z")
    del doc["uplink_message"]["decoded_payload"]["measured"]
    with pytest.raises(DecodeError, match="the time field measured is not in the payload"):
        decode_tts(m)(orjson.dumps(doc), None)


def test_a_frame_counter_reset_is_not_a_duplicate_but_a_redelivery_is() -> None:
    decode = decode_tts(DOCS)
    first = decode(sample("tts_docs_uplink.json"), None)
    assert decode(sample("tts_docs_uplink.json"), "v3/app1@ttn/devices/dev1/up").key == first.key  # webhook = MQTT
    doc = orjson.loads(sample("tts_docs_uplink.json"))
    # synthetic: the device rejoined (new session), counts from 1 again, and is heard later
    doc["uplink_message"]["session_key_id"] = "AYuwtYLJLlKtcfcN1LDtDQ=="
    doc["uplink_message"]["received_at"] = "2020-02-12T16:15:45.123456789Z"
    assert decode(orjson.dumps(doc), None).key != first.key


def test_malformed_bodies() -> None:
    with pytest.raises(MalformedPayload, match="not JSON"):
        decode_tts(DOCS)(b"{nope", None)
    with pytest.raises(MalformedPayload, match="expected a JSON object, got list"):
        decode_chirpstack(DOCS)(b"[1]", None)
    with pytest.raises(DecodeError, match="end_device_ids.device_id is missing"):
        decode_tts(DOCS)(b'{"uplink_message": {}}', None)
    doc = orjson.loads(sample("tts_docs_uplink.json"))
    doc["uplink_message"]["decoded_payload"]["temperature"] = "warm"
    m = mapping('[[device]]\ndevice_id = "dev1"\nfields = { temperature = { datastream = 1, scale = 2 } }')
    with pytest.raises(DecodeError, match="field temperature: 'warm' is not a number, and the mapping converts it"):
        decode_tts(m)(orjson.dumps(doc), None)


CHIRP = mapping(
    """
    [[device]]
    dev_eui = "70B3D57BA0003BB8"
    network = "chirpstack"
    [device.fields]
    "battery_voltage.value" = { datastream = 5, convert = "mv-to-v", scale = 1000 }
    "$.protocol_version" = 6
    """
)


def test_chirpstack_uplink_with_object() -> None:
    message = decode_chirpstack(CHIRP)(sample("chirpstack_decentlab_dl_pr26_up_with_object.synthetic.json"), None)
    assert message.source == "chirpstack"
    assert message.key == "70b3d57ba0003bb8:20:ede7dfc1-a1f5-418c-b009-dc57ebcf0895"
    battery, version = message.readings
    assert (battery.datastream_id, battery.result, version.datastream_id, version.result) == (5, 3.199, 6, 2)
    assert battery.phenomenon_time == at("2024-11-10T12:51:50+00:00")
    assert battery.parameters == {
        "f_cnt": 20,
        "f_port": 1,
        "rssi": -106,
        "snr": 3.0,
        "gateways": [{"id": "fcc23dfffe2e72ed", "rssi": -106, "snr": 3.0}],
        "frequency": 868300000,
        "spreading_factor": 7,
        "bandwidth": 125000,
    }


def test_chirpstack_without_object_and_unknown_devices() -> None:
    with pytest.raises(DecodeError, match="no decoded payload"):
        decode_chirpstack(CHIRP)(sample("chirpstack_decentlab_dl_pr26_up.json"), None)
    with pytest.raises(DecodeError, match=r"ChirpStack device dev_eui '0101010101010101' is not in"):
        decode_chirpstack(CHIRP)(sample("chirpstack_docs_up.json"), None)
    # A device mapped for The Things Stack only is not a ChirpStack device.
    ttn_only = mapping('[[device]]\ndev_eui = "0101010101010101"\nnetwork = "ttn"\nfields = { x = 1 }')
    with pytest.raises(DecodeError, match="is not in"):
        decode_chirpstack(ttn_only)(sample("chirpstack_docs_up.json"), None)


def test_chirpstack_raw_data_through_a_payload_decoder() -> None:
    m = mapping('[[device]]\ndev_eui = "0101010101010101"\npayload = "json"\nfields = { x = 1 }')
    with pytest.raises(DecodeError, match="payload json: not JSON"):  # the docs' data is one byte, 0xAA
        decode_chirpstack(m)(sample("chirpstack_docs_up.json"), None)
    doc = orjson.loads(sample("chirpstack_docs_up.json"))
    doc["data"] = base64.b64encode(b'{"x": 4.5}').decode()  # synthetic: a device that sends JSON text
    [r] = decode_chirpstack(m)(orjson.dumps(doc), None).readings
    assert r.result == 4.5 and r.parameters is not None and r.parameters["spreading_factor"] == 11
    assert r.parameters["f_cnt"] == 0  # absent in the docs' example


def test_chirpstack_events_that_are_no_uplink_are_ignored() -> None:
    for name in ("chirpstack_docs_status.json", "chirpstack_docs_join.json"):
        assert decode_chirpstack(CHIRP)(sample(name), None) == Message("chirpstack", None, (), "lorawan")
    topic = "application/17c82e96/device/0101010101010101/event/status"
    assert decode_chirpstack(CHIRP)(sample("chirpstack_docs_up.json"), topic).readings == ()
