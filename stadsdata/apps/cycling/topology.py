"""Intersections described as data: a MAP-like topology loaded from a JSON file.

The file format (documented in docs/cycling.md) follows the shape of the MAP message of the
Dutch iVRI chain (SAE J2735 MapData as profiled by Talking Traffic): an intersection has
signal groups and ingress lanes grouped by approach; each lane names its signal group and
has a path of WGS84 points *from the stop line outward*, as MAP lane node lists do. The
first point of a lane's path is therefore its stop-line position.

Geometry is worked on in metres in a local azimuthal equidistant projection centred on the
intersection, which keeps distance errors below a millimetre within a few hundred metres
and works for any city without choosing a national grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pyproj import Transformer
from shapely.geometry import LineString

LaneKind = Literal["cycle", "car"]
KINDS: tuple[str, ...] = ("cycle", "car")


class TopologyError(ValueError):
    """An intersection file that cannot be used; the message names the place in the file."""


@dataclass(frozen=True)
class SignalGroup:
    id: str
    kind: LaneKind
    name: str = ""


@dataclass(frozen=True)
class Lane:
    """An ingress lane: its signal group and its path from the stop line outward (lon, lat)."""

    id: str
    kind: LaneKind
    signal_group: str
    path: tuple[tuple[float, float], ...]
    sumo_lane: str | None = None

    @property
    def stop_line(self) -> tuple[float, float]:
        return self.path[0]


@dataclass(frozen=True)
class Approach:
    id: str
    name: str
    lanes: tuple[Lane, ...]


@dataclass(frozen=True)
class Intersection:
    id: str
    name: str
    position: tuple[float, float]
    signal_groups: tuple[SignalGroup, ...]
    approaches: tuple[Approach, ...]
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    def lanes(self, kind: LaneKind | None = None) -> list[tuple[Approach, Lane]]:
        return [(a, lane) for a in self.approaches for lane in a.lanes if kind is None or lane.kind == kind]

    def group(self, group_id: str) -> SignalGroup:
        for g in self.signal_groups:
            if g.id == group_id:
                return g
        raise KeyError(group_id)

    @cached_property
    def projection(self) -> LocalProjection:
        return LocalProjection(*self.position)

    def to_json(self) -> dict[str, Any]:
        """The intersection in its file format."""
        return {
            "id": self.id,
            "name": self.name,
            "position": list(self.position),
            "properties": self.properties,
            "signal_groups": [{"id": g.id, "kind": g.kind, "name": g.name} for g in self.signal_groups],
            "approaches": [
                {
                    "id": a.id,
                    "name": a.name,
                    "lanes": [
                        {
                            "id": lane.id,
                            "kind": lane.kind,
                            "signal_group": lane.signal_group,
                            "path": [list(p) for p in lane.path],
                            **({"sumo_lane": lane.sumo_lane} if lane.sumo_lane else {}),
                        }
                        for lane in a.lanes
                    ],
                }
                for a in self.approaches
            ],
        }


class LocalProjection:
    """WGS84 (lon, lat) to metres east/north of a centre point, and back."""

    def __init__(self, lon: float, lat: float) -> None:
        crs = f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m +no_defs"
        self._forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        self._inverse = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def to_metres(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = self._forward.transform(lon, lat)
        return float(x), float(y)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        lon, lat = self._inverse.transform(x, y)
        return float(lon), float(lat)

    def line(self, path: tuple[tuple[float, float], ...]) -> LineString:
        return LineString([self.to_metres(lon, lat) for lon, lat in path])


def load(path: str | Path) -> Intersection:
    """Read and check an intersection file; a ``TopologyError`` says what is wrong and where."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TopologyError(f"{p}: no such file") from None
    except json.JSONDecodeError as e:
        raise TopologyError(f"{p}: not JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    try:
        return parse(data)
    except TopologyError as e:
        raise TopologyError(f"{p}: {e}") from None


def parse(data: Any) -> Intersection:
    """An intersection from the decoded JSON of its file."""
    root = _object(data, "the file")
    groups = tuple(
        SignalGroup(
            id=_text(g, "id", f"signal_groups[{i}]"),
            kind=_kind(g, f"signal_groups[{i}]"),
            name=str(g.get("name", "")),
        )
        for i, g in enumerate(_objects(root, "signal_groups", "the file"))
    )
    known = {g.id for g in groups}
    if len(known) != len(groups):
        raise TopologyError("signal_groups: ids must be unique")
    approaches: list[Approach] = []
    lane_ids: set[str] = set()
    for i, a in enumerate(_objects(root, "approaches", "the file")):
        where = f"approaches[{i}]"
        lanes: list[Lane] = []
        for j, raw in enumerate(_objects(a, "lanes", where)):
            at = f"{where}.lanes[{j}]"
            lane = Lane(
                id=_text(raw, "id", at),
                kind=_kind(raw, at),
                signal_group=_text(raw, "signal_group", at),
                path=_path(raw.get("path"), f"{at}.path"),
                sumo_lane=str(raw["sumo_lane"]) if raw.get("sumo_lane") is not None else None,
            )
            if lane.signal_group not in known:
                raise TopologyError(
                    f"{at}.signal_group: {lane.signal_group!r} is not one of signal_groups {sorted(known)}"
                )
            if lane.id in lane_ids:
                raise TopologyError(f"{at}.id: lane id {lane.id!r} is used twice")
            lane_ids.add(lane.id)
            lanes.append(lane)
        approaches.append(Approach(id=_text(a, "id", where), name=str(a.get("name", "")), lanes=tuple(lanes)))
    position = _point(root.get("position"), "position")
    props = root.get("properties", {})
    if not isinstance(props, dict):
        raise TopologyError("properties: must be an object")
    return Intersection(
        id=_text(root, "id", "the file"),
        name=_text(root, "name", "the file"),
        position=position,
        signal_groups=groups,
        approaches=tuple(approaches),
        properties=props,
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(f"{where}: must be a JSON object")
    return value


def _objects(parent: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = parent.get(key)
    if not isinstance(value, list) or not value:
        raise TopologyError(f"{where}: {key!r} must be a non-empty list")
    return [_object(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise TopologyError(f"{where}: {key!r} must be a non-empty string")
    return value


def _kind(obj: dict[str, Any], where: str) -> LaneKind:
    value = obj.get("kind")
    if value == "cycle":
        return "cycle"
    if value == "car":
        return "car"
    raise TopologyError(f"{where}: 'kind' must be one of {list(KINDS)}, not {value!r}")


def _point(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise TopologyError(f"{where}: a point is [longitude, latitude] in WGS84 degrees")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise TopologyError(f"{where}: [{lon}, {lat}] is outside WGS84 longitude/latitude ranges")
    return lon, lat


def _path(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise TopologyError(f"{where}: at least two points, from the stop line outward")
    return tuple(_point(v, f"{where}[{i}]") for i, v in enumerate(value))
