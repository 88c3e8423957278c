"""What every simulator is made of: stations (Things), streams (Datastreams), a time grid and seeded noise.

A simulator is a pure function of its seed, the demo's anchor time and the time asked for: the
reading of a station at a time is the same whichever way it is reached (in one backfill, in
chunks, live, or again after a restart). Randomness therefore does not come from a running
random generator but from a hash of (seed, station, stream, time slot).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from stadsdata.ingest.mapping import FieldMap

MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
COUNT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation"
SIMULATOR = "stadsdata demo"
"""The ``simulator`` property of every Thing the demo makes, so that no one takes its data for real."""


@dataclass(frozen=True)
class Unit:
    name: str
    symbol: str
    definition: str

    def json(self) -> dict[str, str]:
        return {"name": self.name, "symbol": self.symbol, "definition": self.definition}


@dataclass(frozen=True)
class Phenomenon:
    """An ObservedProperty."""

    name: str
    definition: str
    description: str


@dataclass(frozen=True)
class Stream:
    """One Datastream of a station: ``field`` is the member of the station's payload that carries it.

    ``convert`` and ``offset`` are the ingest mapping's conversion of that member (docs/ingest.md), for
    stations that report through a LoRaWAN webhook; the stored value is what the mapping makes of it.
    """

    field: str
    label: str
    phenomenon: Phenomenon
    unit: Unit
    observation_type: str = MEASUREMENT
    convert: str | None = None
    offset: float = 0.0

    def stored(self, raw: float) -> Any:
        """The value stored for the payload value ``raw``: the ingest mapping's own conversion."""
        return FieldMap(select=self.field, datastream=0, convert=self.convert, offset=self.offset).value(raw)


@dataclass(frozen=True)
class Station:
    """A sensor station, which becomes one Thing with one Location and a Datastream per stream."""

    key: str
    """The device id: unique in the demo; LoRaWAN stations use it as The Things Stack device id."""
    name: str
    description: str
    lon: float
    lat: float
    place: str
    """Where it is, in words (a neighbourhood, a street); the Location's name."""
    sensor: str
    """The Sensor's name (the device model); its description says it is simulated."""
    interval: int
    """Seconds between two readings."""
    streams: tuple[Stream, ...]
    properties: dict[str, Any] = field(default_factory=dict)
    transport: str = "http"
    """How live readings arrive: ``http`` (POST of Observations) or ``ttn`` (The Things Stack webhook)."""
    phase: int = 0
    """Seconds after each multiple of ``interval`` at which it reports (stations do not all report at once)."""

    def slots(self, start: float, end: float) -> Iterator[int]:
        """The reporting times in the half-open interval (start, end], in epoch seconds."""
        k = math.floor((start - self.phase) / self.interval) + 1
        t = k * self.interval + self.phase
        while t <= end:
            yield t
            t += self.interval

    def stream(self, name: str) -> Stream:
        return next(s for s in self.streams if s.field == name)


class Simulator(ABC):
    """The stations of one domain and what they report."""

    domain: str

    def __init__(self, seed: int, anchor: int) -> None:
        self.seed = seed
        self.anchor = anchor
        """The demo's start (epoch seconds, whole hour): the events of the story (a battery that dies, an
        event in the city centre) are placed relative to it, so that a demo always has them recently."""
        self.stations: tuple[Station, ...] = ()
        """The stations, always the same for the same seed."""

    @abstractmethod
    def sample(self, station: Station, t: int) -> dict[str, float] | None:
        """The payload ``station`` reports at ``t`` (a slot of its grid): field → value; None when it is silent."""

    def phase(self, key: str, interval: int) -> int:
        return int(uniform(self.seed, key, "phase") * interval)


def spread(seed: int, simulators: Iterable[Simulator]) -> None:
    """Spread the reporting times of all stations with the same interval evenly over that interval.

    With 15 stations reporting every 5 minutes, one of them reports every 20 seconds, so a live demo
    shows new data within half a minute of its start; which station takes which turn depends on the seed.
    """
    simulators = list(simulators)
    by_interval: dict[int, list[tuple[float, str]]] = {}
    for sim in simulators:
        for st in sim.stations:
            by_interval.setdefault(st.interval, []).append((uniform(seed, st.key, "turn"), st.key))
    phases: dict[str, int] = {}
    for interval, turns in by_interval.items():
        turns.sort()
        shift = uniform(seed, "shift", interval) * interval / len(turns)
        for k, (_, key) in enumerate(turns):
            phases[key] = int(shift + k * interval / len(turns))
    for sim in simulators:
        sim.stations = tuple(replace(st, phase=phases[st.key]) for st in sim.stations)


# --- seeded noise -----------------------------------------------------------------------------

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit number."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _key_hash(key: str) -> int:
    h = 0xCBF29CE484222325  # FNV-1a, stable across processes (unlike hash())
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & _MASK
    return h


_KEYS: dict[str, int] = {}


def uniform(seed: int, *keys: str | int) -> float:
    """A number in [0, 1) determined by the seed and the keys."""
    h = _mix(seed & _MASK)
    for k in keys:
        if isinstance(k, str):
            kh = _KEYS.get(k)
            if kh is None:
                kh = _KEYS[k] = _key_hash(k)
            h = _mix(h ^ kh)
        else:
            h = _mix(h ^ (k & _MASK))
    return (h >> 11) / float(1 << 53)


def normal(seed: int, *keys: str | int) -> float:
    """A standard normal number determined by the seed and the keys (Box-Muller)."""
    u1 = uniform(seed, *keys, "n1")
    u2 = uniform(seed, *keys, "n2")
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def smooth(seed: int, key: str, t: float, period: float) -> float:
    """Noise that wanders smoothly: standard normal knots every ``period`` seconds, cosine-interpolated."""
    k = math.floor(t / period)
    f = (t / period) - k
    a = normal(seed, key, int(k))
    b = normal(seed, key, int(k) + 1)
    w = (1 - math.cos(math.pi * f)) / 2
    return a * (1 - w) + b * w


def poisson(seed: int, mean: float, *keys: str | int) -> int:
    """A Poisson-like count with the given mean (exact below 30, normal approximation above)."""
    if mean <= 0:
        return 0
    if mean < 30:
        u = uniform(seed, *keys, "p")
        k, p = 0, math.exp(-mean)
        s = p
        while u > s and k < 200:
            k += 1
            p *= mean / k
            s += p
        return k
    return max(0, round(mean + math.sqrt(mean) * normal(seed, *keys, "p")))


DAY = 86_400
HOUR = 3_600
