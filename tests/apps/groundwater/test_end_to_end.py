"""End to end: homes on a real server, their sensors' raw uplinks through the TTN webhook, and the app's
alerts at the right moments to a real webhook receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from stadsdata.apps.groundwater import monitor, registry, sensors
from stadsdata.apps.groundwater.alerts import SmtpNotifier, WebhookNotifier
from stadsdata.apps.groundwater.levels import PA_PER_M
from stadsdata.apps.groundwater.platform import Platform, http_transport
from stadsdata.cli import main
from stadsdata.plugins import plugin_manager
from stadsdata.web.browser import free_port
from tests.serving import SECRET, server

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402

T0 = datetime(2026, 11, 16, tzinfo=UTC)
HOURS = 60
HOMES = """
barometer = {barometer}
barometer_unit = "hPa"

[[home]]
id = "home-a"
owner = "resident-a1"
address = "Testlaan 1, 7500 AA Enschede"
email = "bewoner-a@example.nl"
buurtcode = "BU01530310"
floor_nap = 38.55
crawlspace_floor_nap = 37.85
location = [6.8937, 52.2215]
[home.sensor]
kind = "pressure"
model = "Decentlab DL-PR26"
device_id = "dl-pr26-home-a"
interval_s = 3600
field = "pressure_bar"
payload = "decentlab-dl-pr26-2bar"
[[home.calibration]]
valid_from = 2026-01-01T00:00:00Z
well_top_nap = 37.95
cable_length = 2.50

[[home]]
id = "home-b"
owner = "resident-b2"
address = "Testlaan 3, 7500 AA Enschede"
email = "bewoner-b@example.nl"
buurtcode = "BU01530310"
floor_nap = 38.60
crawlspace_floor_nap = 37.90
location = [6.8940, 52.2218]
[home.sensor]
kind = "distance"
model = "Milesight EM500-UDL"
device_id = "em500-udl-home-b"
interval_s = 3600
field = "distance_m"
battery_field = "battery_pct"
payload = "milesight-em500-udl"
[[home.calibration]]
valid_from = 2026-01-01T00:00:00Z
well_top_nap = 37.98
sensor_above_top = 0.02
"""


def depth_a(h: int) -> float:
    """Home a's water below its crawlspace floor at hour h: steady at 0.60 m, a rise of 3 cm an hour from hour
    24 to 40 (peak 0.12 m), then a fall of 1.2 cm an hour."""
    if h <= 24:
        return 0.60
    if h <= 40:
        return 0.60 - 0.03 * (h - 24)
    return 0.12 + 0.012 * (h - 40)


def air_hpa(h: int) -> float:
    return 1013.0 + 8.0 * math.sin(h / 9)  # a passing low: ±8 hPa is ±8 cm of water if left uncompensated


def dl_pr26(pressure_bar: float) -> bytes:
    raw = round(16384 + pressure_bar / 2.0 * 32768)  # the 0-2 bar device
    return struct.pack(">BHHHHH", 2, 0x0167, 0x0003, raw, 24599, 3600)


def em500_udl(distance_m: float) -> bytes:
    return bytes([0x01, 0x75, 87, 0x03, 0x82]) + round(distance_m * 1000).to_bytes(2, "little")


def uplink(device: str, t: datetime, payload: bytes, f_cnt: int) -> dict[str, Any]:
    when = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "end_device_ids": {"device_id": device, "application_ids": {"application_id": "groundwater"}},
        "received_at": when,
        "uplink_message": {
            "f_port": 2,
            "f_cnt": f_cnt,
            "frm_payload": base64.b64encode(payload).decode(),
            "rx_metadata": [{"gateway_ids": {"gateway_id": "enschede-stadhuis"}, "rssi": -90, "snr": 5.0}],
            "received_at": when,
        },
    }


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"key": self.headers["Idempotency-Key"], **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 Message accepted for delivery"


def expected_rising(kind_start: bool) -> int:
    """The hour the rising alert starts (or, with False, ends), by numpy's least squares on the true levels:
    a rise of 5 cm a day over the last 24 hours that reaches 0.20 m within 3 days, ends under 2.5 cm a day."""
    active = False
    for h in range(HOURS):
        xs = [x for x in range(max(0, h - 24), h + 1)]
        if len(xs) < 4 or xs[-1] - xs[0] < 12:
            continue
        rate = -np.polyfit(np.array(xs) / 24, [depth_a(x) for x in xs], 1)[0]
        if not active and rate >= 0.05 and depth_a(h) - 3 * rate < 0.20 and depth_a(h) >= 0.20:
            if kind_start:
                return h
            active = True
        elif active and rate < 0.025:
            return h
    raise AssertionError("no such hour")


def test_simulated_homes_through_the_webhook_fire_alerts_at_the_right_moments(tmp_path: Path) -> None:
    pm = plugin_manager()
    if not pm.is_registered(sensors):
        pm.register(sensors)  # as the app's entry point registers it in an installed stadsdata
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    Receiver.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        db = tmp_path / "city.db"
        with server(db, None) as base:
            platform = Platform(http_transport(base + "/v1.1"))
            baro = platform.send(
                "POST",
                "Things",
                {
                    "name": "Reference barometer",
                    "description": "air pressure for the wells' barometric compensation",
                    "Locations": [
                        {
                            "name": "Twenthe",
                            "description": "weather station",
                            "encodingType": "application/geo+json",
                            "location": {"type": "Point", "coordinates": [6.891, 52.274]},
                        }
                    ],
                    "Datastreams": [
                        {
                            "name": "Air pressure",
                            "description": "station pressure",
                            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                            "unitOfMeasurement": {"name": "hectopascal", "symbol": "hPa", "definition": "hPa"},
                            "Sensor": {"name": "barometer", "description": "-", "encodingType": "text/html",
                                       "metadata": "-"},
                            "ObservedProperty": {"name": "Air pressure", "definition": "urn:air", "description": "-"},
                        }
                    ],
                },
            )  # fmt: skip
            baro_ds = platform.send("GET", f"Things({baro['@iot.id']})/Datastreams", None)["value"][0]["@iot.id"]
            homes_file = tmp_path / "homes.toml"
            homes_file.write_text(HOMES.format(barometer=baro_ds))
            reg = registry.load(homes_file)
            stored = [registry.store(platform, h) for h in reg.homes]
            (tmp_path / "mapping.toml").write_text(registry.mapping_toml(stored))
        assert "Testlaan" not in repr(reg.homes)  # the address is not in a home's repr, so never in a log line

        with server(db, str(tmp_path / "mapping.toml")) as base:
            platform = Platform(http_transport(base + "/v1.1"))
            web = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {SECRET}"})
            things = platform.find("Things", "properties/domain eq 'groundwater'")
            assert {t["properties"]["visibility"] for t in things} == {"personal"}
            assert "Testlaan" not in json.dumps(things)
            cal_a = reg.homes[0].calibrations[0]
            cal_b = reg.homes[1].calibrations[0]
            notifiers = [
                WebhookNotifier(f"http://127.0.0.1:{receiver.server_address[1]}/alerts"),
                SmtpNotifier(
                    "127.0.0.1", smtp.port, "grondwater@enschede.example", lambda home: [reg.home(home).email]
                ),
            ]
            state = tmp_path / "alerts.json"
            seen_at: dict[str, int] = {}
            for h in range(HOURS):
                t = T0 + timedelta(hours=h)
                platform.add_observations(baro_ds, [(t, round(air_hpa(h), 1), None)])
                # the water column above the membrane and the air above it make the absolute pressure
                level_a = cal_a.crawlspace_floor_nap - depth_a(h)
                column = level_a - cal_a.sensor_nap
                p_bar = (column * PA_PER_M + air_hpa(h) * 100) / 100_000
                answer = web.post("/ingest/ttn", json=uplink("dl-pr26-home-a", t, dl_pr26(p_bar), h))
                assert answer.status_code == 200, answer.text
                if h == 30:  # a retried webhook: stored once
                    assert (
                        web.post("/ingest/ttn", json=uplink("dl-pr26-home-a", t, dl_pr26(p_bar), h)).status_code == 200
                    )
                level_b = cal_b.crawlspace_floor_nap - 1.0 - 0.001 * h
                body = uplink("em500-udl-home-b", t, em500_udl(cal_b.sensor_nap - level_b), h)
                assert web.post("/ingest/ttn", json=body).status_code == 200
                report = monitor.run(platform, reg, state, notifiers, now=t + timedelta(minutes=1))
                assert not report.problems
                for e in report.events:
                    seen_at[f"{e.home}:{e.kind}:{e.state}"] = h
                    assert e.time == t  # an alert is about the newest reading, delivered in the run right after it
            # a run with nothing new sends nothing again
            assert monitor.run(platform, reg, state, notifiers, now=T0 + timedelta(hours=HOURS)).events == []

            level_obs = platform.observations(stored[0].datastreams["level"])
            assert len(level_obs) == HOURS
            for (_, level), h in zip(level_obs, range(HOURS), strict=True):
                truth = cal_a.crawlspace_floor_nap - depth_a(h)
                assert abs(level - truth) < 0.002  # 2 mm: the sensor's 0-2 bar range in 32768 steps is 0.6 mm
            web.close()

            # the command line on the same platform: the BRO/CSV export and the pages
            api = base + "/v1.1"
            out = tmp_path / "home-a.csv"
            common = ["--homes", str(homes_file), "--url", api]
            assert (
                main(["groundwater", "export", "home-a", *common, "--gmw", "GMW000000012345", "--out", str(out)]) == 0
            )
            rows = out.read_text().splitlines()
            assert len(rows) == HOURS + 1 and rows[0].startswith("gmwBroId,tubeNumber,observationType,validationStatus")
            assert rows[1].startswith(
                "GMW000000012345,1,reguliereMeting,voorlopig,oordeelDeskundige,druksensor,KNMImeting"
            )
            pages = tmp_path / "pages"
            args = ["groundwater", "pages", *common, "--state", str(state), "--out", str(pages), "--staff"]
            assert main(args) == 0
            assert "Testlaan" not in (pages / "homes" / "home-a.html").read_text()
            assert "niet apart getoond" in (pages / "city.html").read_text()  # 2 homes in the buurt: under k = 5

        # water less than 0.20 m below the floor first at hour 38 (0.18 m), confirmed by the second reading at 39;
        # over again when it is 0.25 m down: 0.12 + 0.012 k ≥ 0.25 at k = 11, hour 51 (0.252 m)
        assert seen_at["home-a:high:raised"] == 39
        assert seen_at["home-a:high:cleared"] == 51
        assert seen_at["home-a:rising:raised"] == expected_rising(True)
        assert seen_at["home-a:rising:cleared"] == expected_rising(False)
        assert 24 < seen_at["home-a:rising:raised"] < 39
        assert not any(k.startswith("home-b") for k in seen_at)

        keys = [r["key"] for r in Receiver.received]
        assert len(keys) == len(set(keys)) == 4
        assert {r["home"] for r in Receiver.received} == {"home-a"}
        assert not any("Testlaan" in json.dumps(r) for r in Receiver.received)
        high = next(r for r in Receiver.received if r["kind"] == "high" and r["state"] == "raised")
        assert high["time"] == "2026-11-17T15:00:00Z" and high["depth"] == pytest.approx(0.15, abs=0.002)
        assert "18 cm" not in high["message"]["nl"] and "15 cm" in high["message"]["nl"]

        assert len(mailbox.messages) == 4
        assert {tuple(to) for to, _ in mailbox.messages} == {("bewoner-a@example.nl",)}
        assert any("Grondwater hoog" in body and "15 cm" in body for _, body in mailbox.messages)
    finally:
        smtp.stop()
        receiver.shutdown()
