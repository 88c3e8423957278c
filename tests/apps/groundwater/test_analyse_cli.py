"""``stadsdata groundwater analyse`` on a real server: levels, precipitation and evaporation Datastreams in,
statistics, response time, fit and forecast out."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pastas")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stadsdata.apps.groundwater import hydrology, registry  # noqa: E402
from stadsdata.apps.groundwater.platform import Platform, http_transport  # noqa: E402
from stadsdata.cli import main  # noqa: E402
from tests.apps.groundwater.test_hydrology import knmi  # noqa: E402
from tests.serving import server  # noqa: E402

HOME = """
[[home]]
id = "home-m"
owner = "resident-m"
buurtcode = "BU01530310"
floor_nap = 38.0
crawlspace_floor_nap = 37.4
location = [6.89, 52.22]
[home.sensor]
kind = "level"
device_id = "well-m"
[[home.calibration]]
valid_from = 2000-01-01T00:00:00Z
well_top_nap = 37.4
"""


def weather_thing(platform: Platform, name: str) -> int:
    thing = platform.send(
        "POST",
        "Things",
        {
            "name": f"KNMI Twenthe {name}",
            "description": "daily weather",
            "Locations": [
                {
                    "name": "Twenthe",
                    "description": "KNMI 290",
                    "encodingType": "application/geo+json",
                    "location": {"type": "Point", "coordinates": [6.891, 52.274]},
                }
            ],
            "Datastreams": [
                {
                    "name": f"Twenthe daily {name}",
                    "description": name,
                    "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                    "unitOfMeasurement": {"name": "millimetre", "symbol": "mm", "definition": "mm"},
                    "Sensor": {"name": "KNMI", "description": "-", "encodingType": "text/html", "metadata": "-"},
                    "ObservedProperty": {"name": name, "definition": f"urn:{name}", "description": name},
                }
            ],
        },
    )
    return int(platform.send("GET", f"Things({thing['@iot.id']})/Datastreams", None)["value"][0]["@iot.id"])


def test_analyse_a_well(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prec, evap = knmi("2005-01-01", "2007-12-31")
    block = hydrology.gamma_block_response(0.25, 1.5, 6.0, 400)  # t50 = 6 × Γinc⁻¹(1.5, 0.5) = 7.1 days
    head = 36.8 + np.convolve((prec - 0.9 * evap).to_numpy(), block)[: len(prec)]
    levels = pd.Series(head, index=prec.index)["2006-01-01":]
    homes = tmp_path / "homes.toml"
    homes.write_text(HOME)
    with server(tmp_path / "city.db", None) as base:
        api = base + "/v1.1"
        platform = Platform(http_transport(api))
        stored = registry.store(platform, registry.load(homes).homes[0])
        platform.add_observations(
            stored.datastreams["level"], ((t.tz_localize("UTC"), float(v), None) for t, v in levels.items())
        )
        p, e = weather_thing(platform, "precipitation"), weather_thing(platform, "evaporation")
        platform.add_observations(p, ((t.tz_localize("UTC"), float(v), None) for t, v in prec.items()))
        platform.add_observations(e, ((t.tz_localize("UTC"), float(v), None) for t, v in evap.items()))
        common = ["--homes", str(homes), "--url", api]
        args = ["groundwater", "analyse", "home-m", *common, "--precipitation", str(p), "--evaporation", str(e)]
        assert main([*args, "--rain", "20,20,0,0,0"]) == 0
    out = capsys.readouterr().out
    assert "GHG:" in out and "(provisional: fewer than 8 years)" in out
    t50 = float(out.split("t50 ")[1].split(" days")[0])
    assert abs(t50 - hydrology.gamma_t(1.5, 6.0, 0.5)) / hydrology.gamma_t(1.5, 6.0, 0.5) < 0.10
    assert float(out.split("EVP ")[1].split(" %")[0]) > 95
    assert out.count("forecast 2008-01-0") == 5
