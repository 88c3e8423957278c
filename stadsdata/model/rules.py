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
- Deleting a Location deletes the HistoricalLocations left without any Location;
  deleting an ObservedProperty deletes the MultiDatastreams that use it.
- An Observation belongs to exactly one Datastream or MultiDatastream; a
  MultiDatastream's results, units and data types have one entry per
  ObservedProperty.

Rules act only through the store's ``Tx`` operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stadsdata.errors import ValidationError
from stadsdata.model.entities import (
    DATASTREAM,
    FEATURE_OF_INTEREST,
    HISTORICAL_LOCATION,
    LOCATION,
    MULTI_DATASTREAM,
    OBSERVATION,
    OBSERVED_PROPERTY,
    THING,
    EntityType,
    LinkTable,
    Registry,
    Relation,
)
from stadsdata.model.values import GeoValue, envelope, geometry_bounds
from stadsdata.store.base import Tx

COMPLEX_OBSERVATION = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"
EXTEND_DATASTREAM = "datastream-extend"
RECOMPUTE_DATASTREAM = "datastream-recompute"
CHANGES = "stadsdata.changes"
"""The deferred-work key under which writes record the entities they create or update (``Service.on_change``)."""


@dataclass(frozen=True)
class Change:
    """An entity a write created or updated; ``fields``: the properties an update set (None: all of them)."""

    entity: EntityType
    ids: tuple[int, ...]
    kind: Literal["created", "updated"]
    fields: frozenset[str] | None = None


class Rules:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.record: Callable[[Tx, Change], None] | None = None
        """Told of the entities the rules create (MQTT notifications of derived FeaturesOfInterest and
        HistoricalLocations); Datastreams whose times or area the rules extend are not reported."""
        self.thing_locations = registry.storage(THING.relation("Locations"))  # type: ignore[arg-type]
        self.hl_locations = registry.storage(HISTORICAL_LOCATION.relation("Locations"))  # type: ignore[arg-type]
        assert isinstance(self.thing_locations, LinkTable) and isinstance(self.hl_locations, LinkTable)

    # -- Observations -----------------------------------------------------------------

    def observation_defaults(
        self, tx: Tx, props: dict[str, Any], fks: dict[str, int | None], now: int, where: str
    ) -> None:
        """Check the Observation's parent, fill in phenomenonTime and a derived FeatureOfInterest."""
        entity, parent_id = self.observation_parent(fks, where)
        if props.get("phenomenonTime") is None:
            props["phenomenonTime"] = (now, None)
        if entity is MULTI_DATASTREAM:
            self.check_multi_result(tx, parent_id, props.get("result"), where)
        if fks.get("feature_of_interest_id") is None:
            fks["feature_of_interest_id"] = self.derived_feature(tx, entity, parent_id, where)

    @staticmethod
    def observation_parent(fks: dict[str, int | None], where: str) -> tuple[EntityType, int]:
        """The Datastream or MultiDatastream an Observation belongs to: exactly one of them."""
        ds, mds = fks.get("datastream_id"), fks.get("multi_datastream_id")
        prefix = f"{where}." if where else ""
        if ds is not None and mds is not None:
            raise ValidationError(
                f"{prefix}MultiDatastream: an Observation belongs to a Datastream or a MultiDatastream, not both",
                field=f"{prefix}MultiDatastream",
            )
        if ds is not None:
            return DATASTREAM, ds
        if mds is not None:
            return MULTI_DATASTREAM, mds
        raise ValidationError(
            f"{prefix}Datastream is missing; an Observation must be linked to a Datastream "
            '(or a MultiDatastream), e.g. "Datastream": {"@iot.id": 1}',
            field=f"{prefix}Datastream",
        )

    def check_multi_result(self, tx: Tx, mds_id: int, result: object, where: str) -> None:
        n = len(tx.related_ids(MULTI_DATASTREAM, mds_id, _rel(MULTI_DATASTREAM, "ObservedProperties")))
        if not isinstance(result, list) or len(result) != n:
            field = f"{where}.result" if where else "result"
            raise ValidationError(
                f"{field}: an Observation of MultiDatastream {mds_id} has an array result with {n} values, "
                "one per ObservedProperty",
                field=field,
            )

    def check_multi_datastream(self, tx: Tx, mds_id: int, where: str) -> None:
        """Units, data types and ObservedProperties of a MultiDatastream must match one to one."""
        mds = tx.get(MULTI_DATASTREAM, mds_id)
        assert mds is not None
        n = len(tx.related_ids(MULTI_DATASTREAM, mds_id, _rel(MULTI_DATASTREAM, "ObservedProperties")))
        prefix = f"{where}." if where else ""
        if n == 0:
            raise ValidationError(
                f"{prefix}ObservedProperties is missing; a MultiDatastream needs at least one ObservedProperty",
                field=f"{prefix}ObservedProperties",
            )
        units, types = mds.values["unitOfMeasurements"], mds.values["multiObservationDataTypes"]
        if len(units) != n or len(types) != n:
            raise ValidationError(
                f"{prefix}unitOfMeasurements and multiObservationDataTypes need one entry per ObservedProperty "
                f"({n}), found {len(units)} and {len(types)}",
                field=f"{prefix}unitOfMeasurements",
            )
        if mds.values["observationType"] != COMPLEX_OBSERVATION:
            raise ValidationError(
                f"{prefix}observationType of a MultiDatastream must be {COMPLEX_OBSERVATION}",
                field=f"{prefix}observationType",
            )

    def derived_feature(self, tx: Tx, parent: EntityType, parent_id: int, where: str) -> int:
        """The FeatureOfInterest generated from the Location of the (Multi)Datastream's Thing."""
        key = ("derived_feature", parent.name, parent_id)
        known: int | None = tx.memo.get(key)
        if known is not None:
            return known
        foi = self._derive_feature(tx, parent, parent_id, where)
        tx.memo[key] = foi  # after any insert above, which empties the memo
        return foi

    def _derive_feature(self, tx: Tx, parent: EntityType, parent_id: int, where: str) -> int:
        ds = tx.get(parent, parent_id)
        assert ds is not None
        datastream_id = parent_id
        thing_id = ds.links["Thing"]
        assert thing_id is not None
        first = tx.location_feature(thing_id)
        if first is None:
            field = f"{where}.FeatureOfInterest" if where else "FeatureOfInterest"
            raise ValidationError(
                f"{field} is missing, and Thing {thing_id} of {parent.name} {datastream_id} has no Location "
                "to derive one from; give a FeatureOfInterest or a Location for the Thing",
                field=field,
            )
        loc_id, found = first
        if found is not None:
            return found
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
        if self.record is not None:
            self.record(tx, Change(FEATURE_OF_INTEREST, (foi_id,), "created"))
        return foi_id

    def observation_written(self, tx: Tx, props: dict[str, Any], fks: dict[str, int | None]) -> None:
        names = tuple(props)
        row = (*props.values(), fks["feature_of_interest_id"])
        self.observations_written(tx, self.observation_parent(fks, ""), names, [row], len(names))

    def observations_written(
        self,
        tx: Tx,
        parent: tuple[EntityType, int],
        names: tuple[str, ...],
        rows: Sequence[Sequence[Any]],
        feature_at: int,
    ) -> None:
        """Queue one summary of new Observations of one (Multi)Datastream for the batch's aggregate update.

        ``rows`` hold property values in ``names`` order, and the FeatureOfInterest id at ``feature_at``.
        """
        if not rows:
            return
        time_at = names.index("phenomenonTime")
        starts = [r[time_at][0] for r in rows]
        ends = [r[time_at][0] if r[time_at][1] is None else r[time_at][1] for r in rows]
        result_times: list[int] = []
        if "resultTime" in names:
            at = names.index("resultTime")
            result_times = [r[at] for r in rows if r[at] is not None]
        fois = {r[feature_at] for r in rows}
        rt_min, rt_max = (min(result_times), max(result_times)) if result_times else (None, None)
        tx.defer(EXTEND_DATASTREAM, (parent, min(starts), max(ends), rt_min, rt_max, fois))

    def extend_datastreams(self, tx: Tx, items: list[Any]) -> None:
        """Widen each touched Datastream's times and area, once per Datastream per batch."""
        per_ds: dict[tuple[EntityType, int], list[Any]] = {}
        for parent, start, end, rt_min, rt_max, fois in items:
            agg = per_ds.get(parent)
            if agg is None:
                per_ds[parent] = [start, end, rt_min, rt_max, set(fois)]
                continue
            agg[0] = min(agg[0], start)
            agg[1] = max(agg[1], end)
            if rt_min is not None:
                agg[2] = rt_min if agg[2] is None else min(agg[2], rt_min)
                agg[3] = rt_max if agg[3] is None else max(agg[3], rt_max)
            agg[4] |= fois
        foi_bounds: dict[int, tuple[float, float, float, float]] = {}
        for (entity, ds_id), (start, end, rt_min, rt_max, fois) in per_ds.items():
            ds = tx.get(entity, ds_id)
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
            bounds = before = geometry_bounds(area, "observedArea") if area else None
            for foi in fois:
                if foi not in foi_bounds:
                    feature = tx.get(FEATURE_OF_INTEREST, foi)
                    if feature is None:
                        continue
                    foi_bounds[foi] = geometry_bounds(feature.values["feature"], "feature")
                b = foi_bounds[foi]
                bounds = b if bounds is None else _union(bounds, b)
            if bounds is not None and bounds != before:
                changes["observedArea"] = GeoValue(envelope(bounds), bounds)
            if changes:
                tx.update(entity, ds_id, changes, {})

    def recompute_datastreams(self, tx: Tx, parents: list[tuple[EntityType, int] | None]) -> None:
        """Recompute times and area from scratch (after Observations were changed or deleted)."""
        for parent in set(parents):
            if parent is None:
                continue
            entity, ds_id = parent
            if not tx.exists(entity, ds_id):
                continue
            column = "datastream_id" if entity is DATASTREAM else "multi_datastream_id"
            pt_min, pt_max, rt_min, rt_max, fois = tx.observation_extent(column, ds_id)
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
            tx.update(entity, ds_id, changes, {})

    # -- Things and Locations ------------------------------------------------------------

    def set_thing_locations(
        self, tx: Tx, thing_id: int, location_ids: list[int], now: int, *, replace: bool = True
    ) -> None:
        """Make ``location_ids`` the Thing's current Locations (or add them) and record a HistoricalLocation."""
        link = self.thing_locations
        assert isinstance(link, LinkTable)
        current = [] if replace else tx.related_ids(THING, thing_id, _rel(THING, "Locations"))
        if replace:
            tx.unlink(link, thing_id)
        added = [loc for loc in dict.fromkeys(location_ids) if loc not in current]
        for loc in added:
            tx.link(link, thing_id, loc)
        if not added and not replace:
            return  # nothing moved
        hl_id = tx.insert(HISTORICAL_LOCATION, {"time": now}, {"thing_id": thing_id})
        hl_link = self.hl_locations
        assert isinstance(hl_link, LinkTable)
        for loc in [*current, *added]:
            tx.link(hl_link, hl_id, loc)
        if self.record is not None:
            self.record(tx, Change(HISTORICAL_LOCATION, (hl_id,), "created"))

    def location_changed(self, tx: Tx, location_id: int) -> None:
        """A Location's geometry changed: later Observations get a new derived feature."""
        tx.set_generated_foi(location_id, None)

    def before_delete(self, tx: Tx, entity_name: str, id: int) -> Any:
        if entity_name == LOCATION.name:
            return tx.related_ids(LOCATION, id, LOCATION.relation("HistoricalLocations"))  # type: ignore[arg-type]
        if entity_name == OBSERVATION.name:
            obs = tx.get(OBSERVATION, id)
            return None if obs is None else self.parent_of(obs.links)
        if entity_name == OBSERVED_PROPERTY.name:
            # A MultiDatastream without one of its ObservedProperties would no longer match its results.
            return tx.related_ids(OBSERVED_PROPERTY, id, _rel(OBSERVED_PROPERTY, "MultiDatastreams"))
        if entity_name == FEATURE_OF_INTEREST.name:
            # Its Observations go with it: the times and area of their (Multi)Datastreams change.
            return [(DATASTREAM if c == "datastream_id" else MULTI_DATASTREAM, p) for c, p in tx.feature_parents(id)]
        return None

    @staticmethod
    def parent_of(links: dict[str, int | None]) -> tuple[EntityType, int] | None:
        if links.get("Datastream") is not None:
            return DATASTREAM, links["Datastream"]  # type: ignore[return-value]
        if links.get("MultiDatastream") is not None:
            return MULTI_DATASTREAM, links["MultiDatastream"]  # type: ignore[return-value]
        return None

    def after_delete(self, tx: Tx, entity_name: str, id: int, memo: Any) -> None:
        if entity_name == LOCATION.name:
            for hl in memo:
                if not tx.related_ids(HISTORICAL_LOCATION, hl, HISTORICAL_LOCATION.relation("Locations")):  # type: ignore[arg-type]
                    tx.delete(HISTORICAL_LOCATION, hl)
        elif entity_name == OBSERVATION.name and memo is not None:
            tx.defer(RECOMPUTE_DATASTREAM, memo)
        elif entity_name == FEATURE_OF_INTEREST.name:
            for parent in memo:
                tx.defer(RECOMPUTE_DATASTREAM, parent)
        elif entity_name == OBSERVED_PROPERTY.name:
            for mds in memo:
                tx.delete(MULTI_DATASTREAM, mds)


def _rel(entity: EntityType, name: str) -> Relation:
    rel = entity.relation(name)
    assert rel is not None
    return rel


def _union(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
