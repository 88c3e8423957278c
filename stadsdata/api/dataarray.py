"""Observations in the dataArray format of SensorThings 1.1 (section 14).

Observations are grouped per Datastream and sent as rows of the selected
components. ``CreateObservations`` bodies are checked in ``model/dataarray.py``.
"""

from __future__ import annotations

from typing import Any

from stadsdata.model.entities import OBSERVATION
from stadsdata.model.values import format_value
from stadsdata.query.plan import ReadPlan
from stadsdata.store.base import Collection

COMPONENTS = ("id", "phenomenonTime", "result", "resultTime", "resultQuality", "validTime", "parameters")


def components_for(plan: ReadPlan) -> list[str]:
    if plan.select is None:
        return list(COMPONENTS)
    out = []
    for name in plan.select:
        comp = "id" if name in ("@iot.id", "id") else name
        if comp in COMPONENTS and comp not in out:
            out.append(comp)
    return out


def format_collection(plan: ReadPlan, data: Collection, base: str, next_link: str | None) -> dict[str, Any]:
    """One dataArray per Datastream, in order of first appearance."""
    components = components_for(plan)
    groups: dict[tuple[str, int | None], list[list[Any]]] = {}
    for e in data.items:
        row: list[Any] = []
        for comp in components:
            if comp == "id":
                row.append(e.id)
                continue
            value = e.values.get(comp)
            prop = OBSERVATION.property(comp)
            assert prop is not None
            row.append(None if value is None else format_value(prop.kind, value))
        parent = "Datastream" if e.links.get("Datastream") is not None else "MultiDatastream"
        groups.setdefault((parent, e.links.get(parent)), []).append(row)
    out: dict[str, Any] = {}
    if data.count is not None:
        out["@iot.count"] = data.count
    if next_link is not None:
        out["@iot.nextLink"] = next_link
    out["value"] = [
        {
            f"{parent}@iot.navigationLink": f"{base}/{parent}s({ds})",
            "components": components,
            "dataArray@iot.count": len(rows),
            "dataArray": rows,
        }
        for (parent, ds), rows in groups.items()
    ]
    return out
