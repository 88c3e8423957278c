"""The entity-specific rules of SensorThings, in one place.

- An Observation without FeatureOfInterest gets one derived from its Thing's
  Location, generated once per Location and reused.
- An Observation without phenomenonTime gets the server time; resultTime
  stays null when omitted.
- Whenever a Thing's Locations change, the Thing's current Locations are
  replaced and a HistoricalLocation records the change.
- A Datastream's phenomenonTime, resultTime and observedArea follow its
  Observations. They are maintained once per Datastream per committed batch,
  not per Observation: no per-row work on the shared Datastream row.
- Deleting a Location deletes the HistoricalLocations left without any Location.

Rules act only through the store's ``Tx`` operations.
"""

from __future__ import annotations

from typing import Any

from stadsdata.errors import ValidationError
from stadsdata.model.entities import (
    DATASTREAM,
    FEATURE_OF_INTEREST,
    HISTORICAL_LOCATION,
    LOCATION,
    OBSERVATION,
    THING,
    LinkTable,
    Registry,
)
from stadsdata.model.values import GeoValue, envelope, geometry_bounds
from stadsdata.store.base import Tx

EXTEND_DATASTREAM = "datastream-extend"
RECOMPUTE_DATASTREAM = "datastream-recompute"


class Rules:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.thing_locations = registry.storage(THING.relation("Locations"))  # type: ignore[arg-type]
        self.hl_locations = registry.storage(HISTORICAL_LOCATION.relation("Locations"))  # type: ignore[arg-type]
        assert isinstance(self.thing_locations, LinkTable) and isinstance(self.hl_locations, LinkTable)

    # -- Observations -----------------------------------------------------------------

    def observation_defaults(
        self, tx: Tx, props: dict[str, Any], fks: dict[str, int | None], now: int, where: str
    ) -> None:
        if props.get("phenomenonTime") is None:
            props["phenomenonTime"] = (now, None)
        if fks.get("feature_of_interest_id") is None and fks.get("datastream_id") is not None:
            fks["feature_of_interest_id"] = self.derived_feature(tx, int(fks["datastream_id"]), where)  # type: ignore[arg-type]

    def derived_feature(self, tx: Tx, datastream_id: int, where: str) -> int:
        """The FeatureOfInterest generated from the Location of the Datastream's Thing."""
        ds = tx.get(DATASTREAM, datastream_id)
        assert ds is not None
        thing_id = ds.links["Thing"]
        assert thing_id is not None
        loc_ids = tx.related_ids(THING, thing_id, THING.relation("Locations"))  # type: ignore[arg-type]
        if not loc_ids:
            field = f"{where}.FeatureOfInterest" if where else "FeatureOfInterest"
            raise ValidationError(
                f"{field} is missing, and Thing {thing_id} of Datastream {datastream_id} has no Location "
                "to derive one from; give a FeatureOfInterest or a Location for the Thing",
                field=field,
            )
        loc_id = loc_ids[0]
        found = tx.scalar_generated_foi(loc_id)
        if found is not None and tx.exists(FEATURE_OF_INTEREST, found):
            return int(found)
        loc = tx.get(LOCATION, loc_id)
        assert loc is not None
        feature = loc.values["location"]
        foi_id = tx.insert(
            FEATURE_OF_INTEREST,
            {
                "name": loc.values["name"],
                "description": loc.values["description"],
                "encodingType": loc.values["encodingType"],
                "feature": GeoValue(feature, geometry_bounds(feature, "location")),
            },
            {},
        )
        tx.set_generated_foi(loc_id, foi_id)
        return foi_id

    def observation_written(self, tx: Tx, props: dict[str, Any], fks: dict[str, int | None]) -> None:
        start, end = props["phenomenonTime"]
        tx.defer(
            EXTEND_DATASTREAM,
            (
                fks["datastream_id"],
                start,
                end if end is not None else start,
                props.get("resultTime"),
                fks["feature_of_interest_id"],
            ),
        )

    def extend_datastreams(self, tx: Tx, items: list[Any]) -> None:
        """Widen each touched Datastream's times and area, once per Datastream per batch."""
        per_ds: dict[int, list[Any]] = {}
        for ds_id, start, end, result_time, foi in items:
            agg = per_ds.get(ds_id)
            if agg is None:
                per_ds[ds_id] = [start, end, result_time, result_time, {foi}]
                continue
            agg[0] = min(agg[0], start)
            agg[1] = max(agg[1], end)
            if result_time is not None:
                agg[2] = result_time if agg[2] is None else min(agg[2], result_time)
                agg[3] = result_time if agg[3] is None else max(agg[3], result_time)
            agg[4].add(foi)
        foi_bounds: dict[int, tuple[float, float, float, float]] = {}
        for ds_id, (start, end, rt_min, rt_max, fois) in per_ds.items():
            ds = tx.get(DATASTREAM, ds_id)
            if ds is None:  # deleted later in the same batch
                continue
            values = ds.values
            changes: dict[str, Any] = {}
            pt = values.get("phenomenonTime")
            new_pt = (start, end) if pt is None else (min(pt[0], start), max(pt[1], end))
            if new_pt != pt:
                changes["phenomenonTime"] = new_pt
            if rt_min is not None:
                rt = values.get("resultTime")
                new_rt = (rt_min, rt_max) if rt is None else (min(rt[0], rt_min), max(rt[1], rt_max))
                if new_rt != rt:
                    changes["resultTime"] = new_rt
            area = values.get("observedArea")
            bounds = geometry_bounds(area, "observedArea") if area else None
            for foi in fois:
                if foi not in foi_bounds:
                    feature = tx.get(FEATURE_OF_INTEREST, foi)
                    if feature is None:
                        continue
                    foi_bounds[foi] = geometry_bounds(feature.values["feature"], "feature")
                b = foi_bounds[foi]
                bounds = b if bounds is None else _union(bounds, b)
            if bounds is not None and (area is None or bounds != geometry_bounds(area, "observedArea")):
                changes["observedArea"] = GeoValue(envelope(bounds), bounds)
            if changes:
                tx.update(DATASTREAM, ds_id, changes, {})

    def recompute_datastreams(self, tx: Tx, ds_ids: list[int]) -> None:
        """Recompute times and area from scratch (after Observations were changed or deleted)."""
        for ds_id in set(ds_ids):
            if not tx.exists(DATASTREAM, ds_id):
                continue
            pt_min, pt_max, rt_min, rt_max, fois = tx.observation_extent(ds_id)
            changes: dict[str, Any] = {
                "phenomenonTime": None if pt_min is None else (pt_min, pt_max),
                "resultTime": None if rt_min is None else (rt_min, rt_max),
            }
            bounds = None
            for foi in fois:
                feature = tx.get(FEATURE_OF_INTEREST, foi)
                if feature is not None:
                    b = geometry_bounds(feature.values["feature"], "feature")
                    bounds = b if bounds is None else _union(bounds, b)
            changes["observedArea"] = None if bounds is None else GeoValue(envelope(bounds), bounds)
            tx.update(DATASTREAM, ds_id, changes, {})

    # -- Things and Locations ------------------------------------------------------------

    def set_thing_locations(self, tx: Tx, thing_id: int, location_ids: list[int], now: int) -> None:
        """Make ``location_ids`` the Thing's current Locations and record a HistoricalLocation."""
        link = self.thing_locations
        assert isinstance(link, LinkTable)
        tx.unlink(link, thing_id)
        for loc in dict.fromkeys(location_ids):
            tx.link(link, thing_id, loc)
        hl_id = tx.insert(HISTORICAL_LOCATION, {"time": now}, {"thing_id": thing_id})
        hl_link = self.hl_locations
        assert isinstance(hl_link, LinkTable)
        for loc in dict.fromkeys(location_ids):
            tx.link(hl_link, hl_id, loc)

    def location_changed(self, tx: Tx, location_id: int) -> None:
        """A Location's geometry changed: later Observations get a new derived feature."""
        tx.set_generated_foi(location_id, None)

    def before_delete(self, tx: Tx, entity_name: str, id: int) -> Any:
        if entity_name == LOCATION.name:
            return tx.related_ids(LOCATION, id, LOCATION.relation("HistoricalLocations"))  # type: ignore[arg-type]
        if entity_name == OBSERVATION.name:
            obs = tx.get(OBSERVATION, id)
            return None if obs is None else obs.links["Datastream"]
        return None

    def after_delete(self, tx: Tx, entity_name: str, id: int, memo: Any) -> None:
        if entity_name == LOCATION.name:
            for hl in memo:
                if not tx.related_ids(HISTORICAL_LOCATION, hl, HISTORICAL_LOCATION.relation("Locations")):  # type: ignore[arg-type]
                    tx.delete(HISTORICAL_LOCATION, hl)
        elif entity_name == OBSERVATION.name and memo is not None:
            tx.defer(RECOMPUTE_DATASTREAM, memo)


def _union(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
