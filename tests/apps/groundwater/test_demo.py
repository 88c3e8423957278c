"""``stadsdata demo`` with the groundwater app: the simulated wells become its homes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stadsdata.apps.groundwater.platform import Platform, http_transport
from stadsdata.apps.groundwater.sim import PAGES, DemoApp, homes_toml
from stadsdata.sim import city
from stadsdata.sim.base import DAY
from stadsdata.sim.feed import Client, backfill, mapping_toml, seed
from stadsdata.sim.wells import Wells
from tests.serving import server

ANCHOR = int(datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp())


def test_demo_wells_are_the_apps_homes(tmp_path: Path) -> None:
    wells = city(11, ANCHOR)[0]
    assert isinstance(wells, Wells)
    wells.stations = wells.stations[:3]
    text = homes_toml(wells)
    assert text.count("[[home]]") == 3 and "ps-lb-" in text and "address" not in text
    db = tmp_path / "demo.db"
    with server(db, None) as base:
        client = Client(base)
        seeded = seed(client, [wells])
        (tmp_path / "mapping.toml").write_text(mapping_toml(seeded))
        client.close()
    with server(db, str(tmp_path / "mapping.toml")) as base:
        client = Client(base)
        backfill(client, seed(client, [wells]), ANCHOR - 2 * DAY, ANCHOR, progress=False)
        client.close()
        app = DemoApp(tmp_path, base, wells)
        report = app.update()
        assert report.derived > 3 * 150  # two days of 15-minute readings, less the lost uplinks
        assert app.update().derived == 0
        platform = Platform(http_transport(base + "/v1.1"))
        things = platform.find("Things", "properties/domain eq 'groundwater'")
        assert len(things) == 3  # the app took the demo's Things, it did not make new ones
        assert all(t["properties"]["visibility"] == "personal" for t in things)
        streams = platform.find("Datastreams", "properties/role eq 'depth'")
        assert len(streams) == 3 and all(s["properties"]["owner"].startswith("resident-") for s in streams)
    assert (tmp_path / PAGES / "city.html").exists()
    assert len(list((tmp_path / PAGES / "homes").glob("home-*.html"))) == 3
