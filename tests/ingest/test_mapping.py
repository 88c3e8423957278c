"""The ingest mapping file: devices and topic rules, field selection, conversions, and the messages of wrong files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from stadsdata.cli import main
from stadsdata.ingest.base import DecodeError
from stadsdata.ingest.connectors import decoders, subscriptions
from stadsdata.ingest.mapping import MappingError, compile_pattern, load, selector
from stadsdata.model.values import to_micros
from stadsdata.settings import Settings

GOOD = """
[[device]]
device_id = "well-roombeek-12"
[device.fields]
level = { datastream = 1, convert = "cm-to-m" }

[[device]]
dev_eui = "70-B3-D5-7B-A0-00-3B-B8"
network = "chirpstack"
fields = { "battery_voltage.value" = 2 }

[[topic]]
name = "meetnet"
pattern = "meetnet/{station}/lucht"
time = "$.ts"
time_format = "epoch-ms"
[topic.fields]
"$.components.pm10" = { by = "station", datastreams = { NL10636 = 21, NL10641 = 22 } }
"temperature" = { datastream = 23, convert = "kelvin-to-celsius" }

[[topic]]
name = "tuin"
pattern = "tuin/+/temp/#"
payload = "number"
qos = 0
fields = { "$" = 30 }

[ttn]
mqtt = true
"""


def write(tmp_path: Path, text: str, name: str = "mapping.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_complete_mapping_gives_decoders_and_subscriptions(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "x.db"), ingest_mapping=write(tmp_path, GOOD))
    assert set(decoders(settings)) == {"ttn", "chirpstack", "mqtt:meetnet", "mqtt:tuin"}
    subs = subscriptions(settings)
    assert [(s.topic_filter, s.source, s.qos) for s in subs] == [
        ("v3/+/devices/+/up", "ttn", 1),
        ("meetnet/+/lucht", "mqtt:meetnet", 1),
        ("tuin/+/temp/#", "mqtt:tuin", 0),
    ]
    meetnet = subs[1].decode
    message = meetnet(
        b'{"ts": 1763891100000, "components": {"pm10": 17.5}, "temperature": 281.15}', "meetnet/NL10641/lucht"
    )
    pm10, temp = message.readings
    assert (pm10.datastream_id, pm10.result, temp.datastream_id, temp.result) == (22, 17.5, 23, 8.0)
    assert pm10.phenomenon_time == to_micros(dt.datetime(2025, 11, 23, 9, 45, tzinfo=dt.UTC))
    assert message.source == "mqtt:meetnet" and message.path == "mqtt" and message.key is not None
    again = meetnet(
        b'{"ts": 1763891100000, "components": {"pm10": 17.5}, "temperature": 281.15}', "meetnet/NL10641/lucht"
    )
    assert again.key == message.key  # a redelivery
    other = meetnet(b'{"ts": 1763891100000, "components": {"pm10": 17.5}}', "meetnet/NL10636/lucht")
    assert other.key != message.key and other.readings[0].datastream_id == 21
    with pytest.raises(DecodeError, match=r"station 'NL99999' has no Datastream in the mapping \(known: NL10636"):
        meetnet(b'{"ts": 1, "components": {"pm10": 1}}', "meetnet/NL99999/lucht")
    with pytest.raises(DecodeError, match="does not match the pattern"):
        meetnet(b"{}", "meetnet/NL10636/water")
    with pytest.raises(DecodeError, match="payload json: not JSON"):
        meetnet(b"<html>", "meetnet/NL10636/lucht")
    with pytest.raises(DecodeError, match=r"none of the mapped fields \(\$.components.pm10, temperature\)"):
        meetnet(b'{"ts": 1}', "meetnet/NL10636/lucht")

    tuin = subs[2].decode
    [r] = tuin(b"19.5", "tuin/achter/temp/a/b").readings
    assert (r.datastream_id, r.result) == (30, 19.5)
    assert tuin(b"19.5", "tuin/achter/temp").key is None  # no time field: two equal payloads are two measurements


def test_no_mapping_no_connectors(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "x.db"))
    assert decoders(settings) == {} and subscriptions(settings) == []


def test_patterns() -> None:
    assert compile_pattern("a/{x}/+/b")[0] == "a/+/+/b"
    _, regex, captures = compile_pattern("a/{x}/#")
    assert captures == ("x",)
    assert regex.fullmatch("a/1") and regex.fullmatch("a/1/2/3") and not regex.fullmatch("b/1")
    for bad, reason in (
        ("a/#/b", "# may only be the last level"),
        ("a/x+/b", "mixes text with a wildcard"),
        ("a/{x}/{x}", "captures {x} twice"),
        ("$SYS/x", "not empty or a \\$SYS topic"),
    ):
        with pytest.raises(MappingError, match=reason):
            compile_pattern(bad)


def test_selectors() -> None:
    doc = {"a": {"b": [10, {"c": 3}]}, "x.y": 1, "Battery Status": "Good"}
    assert selector("a.b.1.c")(doc) == 3
    assert selector("x.y")(doc) == 1
    assert selector("Battery Status")(doc) == "Good"
    assert selector("$.a.b[0]")(doc) == 10
    assert selector("$.a.b[*]")(doc) == [10, {"c": 3}]
    from stadsdata.ingest.mapping import MISSING

    assert selector("a.z")(doc) is MISSING and selector("$.nope")(doc) is MISSING


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[device]]\nfields = { a = 1 }", r"\[\[device\]\] 1: needs device_id \(The Things Stack\) or dev_eui"),
        ('[[device]]\ndevice_id = "d"', r"\[\[device\]\] 1 \(d\): needs \[fields\]"),
        ('[[device]]\ndevice_id = "d"\nfields = { a = 0 }', r"field 'a': a Datastream id is a positive integer"),
        ('[[device]]\ndevice_id = "d"\nfields = { a = "1" }', r"field 'a': must be a Datastream id or a table"),
        ('[[device]]\ndev_eui = "0102"\nfields = { a = 1 }', r"dev_eui '0102' is not 16 hexadecimal digits"),
        ('[[device]]\ndevice_id = "d"\nnetwork = "lora"\nfields = { a = 1 }', r"network 'lora': use ttn or chirpstack"),
        ('[[device]]\ndevice_id = "d"\npayload = "xml"\nfields = { a = 1 }', r"payload 'xml' is no payload decoder"),
        ('[[device]]\ndevice_id = "d"\nfields = { a = { datastream = 1, convert = "furlong" } }', r"convert 'furlong'"),
        ('[[device]]\ndevice_id = "d"\nfields = { "$.[" = 1 }', r"field '\$\.\[': JSONPath '\$\.\[' does not parse"),
        ('[[device]]\ndevice_id = "d"\nfields = { a = { datastream = 1, scale = "x" } }', r"scale must be a number"),
        ('[[device]]\ndevice_id = "d"\ntime_format = "iso"\nfields = { a = 1 }', r"time_format is set but time"),
        (
            '[[device]]\ndevice_id = "d"\nfields = { a = 1 }\n[[device]]\ndevice_id = "d"\nfields = { b = 2 }',
            "mapped twice",
        ),
        ('[[device]]\ndevice_id = "d"\ncolour = 1\nfields = { a = 1 }', r"unknown key\(s\) colour"),
        ('[[topic]]\npattern = "a"\nfields = { a = 1 }', r"\[\[topic\]\] 1: needs a name"),
        ('[[topic]]\nname = "t"\nfields = { a = 1 }', r"\(t\): needs pattern"),
        (
            '[[topic]]\nname = "t"\npattern = "a/{s}"\nfields = { a = { by = "x", datastreams = { q = 1 } } }',
            "by names a capture",
        ),
        ('[[topic]]\nname = "t"\npattern = "a"\nqos = 3\nfields = { a = 1 }', "qos must be 0, 1 or 2"),
        ("[ttn]\nmqtt = 1", r"\[ttn\]: mqtt must be true or false"),
        ("devices = 1", r"unknown key\(s\) devices"),
        ("[[device]\n", "is not valid TOML"),
    ],
)
def test_wrong_files_name_the_file_the_entry_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError, match=problem) as caught:
        load(path)
    assert path in str(caught.value)


def test_a_wrong_mapping_stops_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[[device]]\ndevice_id = "d"\nfields = { a = { datastream = 1, scale = "x" } }')
    status = main(["serve", "--db", str(tmp_path / "x.db"), "--ingest-mapping", path])
    err = capsys.readouterr().err
    assert status == 2
    assert f"invalid configuration: ingest mapping {path}, [[device]] 1 (d), field 'a': scale must be a number" in err
    status = main(["serve", "--db", str(tmp_path / "x.db"), "--ingest-mapping", str(tmp_path / "missing.toml")])
    assert status == 2 and "cannot be read: No such file or directory" in capsys.readouterr().err
