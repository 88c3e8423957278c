"""Feeding a real server (uvicorn on a free port) through its public API: seeding, backfill, live readings."""

from __future__ import annotations

import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stadsdata.ingest.mapping import parse
from stadsdata.sim import Simulator, city
from stadsdata.sim.base import DAY
from stadsdata.sim.feed import Client, Live, Seeded, backfill, mapping_toml, seed, uplink
from stadsdata.sim.wells import Wells
from tests.serving import SECRET, server

ANCHOR = int(datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp())


@pytest.fixture
def small_city() -> list[Simulator]:
    sims = city(11, ANCHOR)
    wells = sims[0]
    assert isinstance(wells, Wells)
    wells.stations = wells.stations[:2]  # two wells and one counter keep the test short
    counters = sims[1]
    counters.stations = counters.stations[:1]
    return [wells, counters]


def test_seed_is_idempotent_and_backfill_resumes(tmp_path: Path, small_city: list[Simulator]) -> None:
    with server(tmp_path / "demo.db", None) as url:
        client = Client(url)
        first = seed(client, small_city)
        again = seed(client, small_city)
        assert [(x.thing, x.datastreams) for x in first] == [(x.thing, x.datastreams) for x in again]
        things = httpx.get(f"{url}/v1.1/Things?$count=true&$top=0").json()
        assert things["@iot.count"] == 3
        thing = httpx.get(f"{url}/v1.1/Things({first[0].thing})").json()
        assert thing["properties"]["simulated"] is True and thing["properties"]["simulator"] == "stadsdata demo"

        made = backfill(client, first, ANCHOR - DAY, ANCHOR, progress=False)
        assert made > 2 * 2 * 90 + 280
        assert backfill(client, seed(client, small_city), ANCHOR - DAY, ANCHOR, progress=False) == 0
        later = backfill(client, seed(client, small_city), ANCHOR - DAY, ANCHOR + 3600, progress=False)
        assert 0 < later <= 2 * 2 * 4 + 12
        count = httpx.get(f"{url}/v1.1/Observations?$count=true&$top=0").json()["@iot.count"]
        assert count == made + later
        client.close()


def test_backfilled_and_webhook_readings_agree(tmp_path: Path, small_city: list[Simulator]) -> None:
    """A well's history (bulk path) and its live uplinks (webhook + ingest mapping) store the same values."""
    with server(tmp_path / "demo.db", None) as url:
        client = Client(url)
        seeded = seed(client, small_city)
        client.close()
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(mapping_toml(seeded))
    with server(tmp_path / "demo.db", str(mapping)) as url:
        client = Client(url)
        well = seeded[0]
        t = next(well.station.slots(ANCHOR, ANCHOR + 3600))
        payload = well.simulator.sample(well.station, t)
        assert payload is not None
        client.request("POST", "/ingest/ttn", uplink(well, t, payload), {"Authorization": f"Bearer {SECRET}"})
        # The same uplink again (a webhook retry) stores nothing more.
        client.request("POST", "/ingest/ttn", uplink(well, t, payload), {"Authorization": f"Bearer {SECRET}"})
        level = well.datastreams["Water_deep_cm"]
        stored = httpx.get(f"{url}/v1.1/Datastreams({level})/Observations?$select=result,parameters").json()["value"]
        assert len(stored) == 1
        assert stored[0]["result"] == well.station.stream("Water_deep_cm").stored(payload["Water_deep_cm"])
        assert stored[0]["parameters"]["f_cnt"] >= 0

        live = Live(client, seeded, SECRET, start=t, speed=3600.0)
        deadline = time.monotonic() + 3
        live.run(until=lambda: time.monotonic() > deadline or live.sent >= 6, sleep=lambda s: time.sleep(min(s, 0.01)))
        assert live.sent >= 6
        total = httpx.get(f"{url}/v1.1/Observations?$count=true&$top=0").json()["@iot.count"]
        assert total == 2 + live.sent
        client.close()


def test_the_mapping_names_every_well(small_city: list[Simulator]) -> None:
    wells = small_city[0]
    seeded = [
        Seeded(st, wells, i, {"Water_deep_cm": 2 * i + 1, "Bat_V": 2 * i + 2}) for i, st in enumerate(wells.stations)
    ]
    mapping = parse(tomllib.loads(mapping_toml(seeded)), "demo.toml")
    for x in seeded:
        device = mapping.device("ttn", x.station.key, None)
        assert device is not None
        level = next(f for f in device.fields if f.select == "Water_deep_cm")
        assert level.datastream == x.datastreams["Water_deep_cm"] and level.convert == "cm-to-m"
        assert level.offset == x.station.properties["probe_level_m_nap"]
