"""The groundwater app in ``stadsdata demo``: the simulated wells (``stadsdata.sim.wells``) as its homes.

The demo's wells report the level in m NAP already (their ingest mapping converts the probe's water
column), so they are homes with a ``level`` sensor. ``homes_toml`` writes the homes file for them, with
pseudonymous ids and no addresses (they are invented homes); ``DemoApp.update`` runs the app over the
demo's server (depths below the crawlspace floor, alerts, sensor health) and writes its pages.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from stadsdata.apps.groundwater import monitor, registry, views
from stadsdata.apps.groundwater.alerts import State
from stadsdata.apps.groundwater.platform import Platform, http_transport
from stadsdata.sim.wells import Wells

HOMES = "groundwater-homes.toml"
STATE = "groundwater-alerts.json"
PAGES = "groundwater-pages"


def pseudonym(seed: int, key: str, kind: str) -> str:
    return f"{kind}-{hashlib.sha256(f'{seed}:{kind}:{key}'.encode()).hexdigest()[:8]}"


def homes_toml(wells: Wells) -> str:
    lines = [
        "# The groundwater app's homes in stadsdata demo: its simulated wells (written by stadsdata demo).",
        "# See docs/groundwater.md for the format.",
    ]
    for st in wells.stations:
        p = st.properties
        lines += [
            "",
            "[[home]]",
            f'id = "{pseudonym(wells.seed, st.key, "home")}"',
            f'owner = "{pseudonym(wells.seed, st.key, "resident")}"',
            f'buurtcode = "{p["buurtcode"]}"',
            f"floor_nap = {p['floor_level_m_nap']}",
            f"crawlspace_floor_nap = {p['crawlspace_floor_m_nap']}",
            f"location = [{st.lon}, {st.lat}]",
            "[home.sensor]",
            'kind = "level"',
            f'model = "{st.sensor}"',
            f'device_id = "{st.key}"',
            f"interval_s = {st.interval}",
            'field = "Water_deep_cm"',
            'battery_field = "Bat_V"',
            "[[home.calibration]]",
            "valid_from = 2000-01-01T00:00:00Z",
            f"well_top_nap = {p['crawlspace_floor_m_nap']}",
        ]
    return "\n".join(lines) + "\n"


class DemoApp:
    """The app over the demo's server; ``update`` is one run."""

    def __init__(self, directory: Path, url: str, wells: Wells) -> None:
        self.dir = directory
        homes = directory / HOMES
        text = homes_toml(wells)
        if not homes.exists() or homes.read_text() != text:
            homes.write_text(text)
        self.registry = registry.load(homes)
        self.platform = Platform(http_transport(url.rstrip("/") + "/v1.1"))

    def update(self) -> monitor.Report:
        report = monitor.run(self.platform, self.registry, self.dir / STATE, [])
        self.write_pages()
        return report

    def write_pages(self) -> None:
        state = State.load(self.dir / STATE)
        views.write_pages(self.platform, self.registry, state, self.dir / PAGES, staff=True)
