"""Simulators of a living Enschede, for ``stadsdata demo``: each domain's sensor stations and what they report.

Every simulator is deterministic: given the seed and the demo's anchor time, the reading of any
station at any time is fixed (``base``), so a history can be computed faster than real time and a
restarted demo goes on where it stopped. The weather is real (KNMI Twenthe, replayed), the
neighbourhoods are real (CBS), the sensors and their readings are simulated, and every Thing the
demo makes says so in its properties (``"simulated": true``). docs/dashboard.md describes the models.
"""

from __future__ import annotations

from stadsdata.sim.air import AirQuality
from stadsdata.sim.base import Simulator, Station, Stream, spread
from stadsdata.sim.counters import Counters
from stadsdata.sim.parking import Parking
from stadsdata.sim.traffic import TrafficLights
from stadsdata.sim.wells import Wells

__all__ = ["Simulator", "Station", "Stream", "city"]


def city(seed: int, anchor: int) -> list[Simulator]:
    """The simulated city: one simulator per domain, their stations reporting in turns (``spread``)."""
    simulators: list[Simulator] = [
        Wells(seed, anchor),
        Counters(seed, anchor),
        Parking(seed, anchor),
        AirQuality(seed, anchor),
        TrafficLights(seed, anchor),
    ]
    spread(seed, simulators)
    return simulators
