"""The right to erasure: remove everything a resident owns (``stadsdata erase --owner X``).

A resident's personal data are the Things, Datastreams and MultiDatastreams whose ``properties.owner`` is
the resident, with everything that hangs off them: Observations, HistoricalLocations, and the Locations and
FeaturesOfInterest that nothing else uses any more. Locations and FeaturesOfInterest others still use are
kept (and reported); Sensors and ObservedProperties (a device model, a quantity) are no personal data and
are left alone.

Everything goes through the service's public API, acting for the server itself (everything is visible),
so the store's rules apply to every delete as they do to a client's: a Thing takes its Datastreams,
MultiDatastreams and HistoricalLocations with it, a Datastream its Observations, a Location the
HistoricalLocations left without one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from stadsdata.errors import NotFound
from stadsdata.query.options import parse_options
from stadsdata.query.path import parse_path
from stadsdata.service import Service
from stadsdata.store.base import Collection

PAGE = 10_000
"""Rows per read; more are read page by page (as a client follows ``@iot.nextLink``)."""

ORDER = ("Things", "Datastreams", "MultiDatastreams", "HistoricalLocations", "Locations", "FeaturesOfInterest")
"""The entity sets in the order the report lists them."""

ROUNDS = 5
"""How often the removal of Datastreams and Things is repeated while new ones of the owner turn up
(data written while the erasure runs)."""


@dataclass
class ErasureReport:
    """What ``erase_owner`` removed (or, on a dry run, would remove) and what it kept."""

    owner: str
    dry_run: bool
    removed: dict[str, list[int]] = field(default_factory=dict)
    """Entity set name → ids removed (or that would be removed)."""
    observations: int = 0
    """Observations removed with their Datastreams and MultiDatastreams."""
    kept: dict[str, list[int]] = field(default_factory=dict)
    """Shared entities left in place: Locations and FeaturesOfInterest others still use."""

    def lines(self) -> list[str]:
        """A human-readable summary, one line per entity set."""
        verb = "would be removed" if self.dry_run else "removed"
        out: list[str] = []
        for name in _ordered(self.removed):
            ids = self.removed[name]
            if ids:
                out.append(f"{name}: {len(ids)} {verb} (ids {_ids(ids)})")
        if self.observations:
            out.append(f"Observations: {self.observations} {verb} with their Datastreams and MultiDatastreams")
        for name in _ordered(self.kept):
            ids = self.kept[name]
            if ids:
                out.append(f"{name}: {len(ids)} kept, still used by others (ids {_ids(ids)})")
        if not any(self.removed.values()) and not self.observations:
            out.append(f"nothing of owner {self.owner!r} was found: nothing {verb}")
        elif self.dry_run:
            out.append("dry run: nothing was removed")
        return out


def _ordered(sets: dict[str, list[int]]) -> list[str]:
    return [n for n in ORDER if n in sets] + sorted(n for n in sets if n not in ORDER)


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def odata_string(text: str) -> str:
    """``text`` as an OData string literal: in single quotes, with single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


class _Eraser:
    def __init__(self, service: Service, owner: str, dry_run: bool) -> None:
        self.service = service
        self.dry_run = dry_run
        self.q = odata_string(owner)
        self.report = ErasureReport(owner, dry_run, {name: [] for name in ORDER}, 0, {})

    # -- reading ---------------------------------------------------------------------------

    async def ids(self, path: str, flt: str | None = None) -> list[int]:
        """The ids of every entity at ``path`` (a collection) that passes ``flt``, page by page."""
        params = {"$select": "id", "$top": str(PAGE), "$orderby": "id"}
        if flt is not None:
            params["$filter"] = flt
        resource = parse_path(self.service.registry, path)
        options = parse_options(params)
        found: list[int] = []
        after = None
        while True:
            try:
                result = await self.service.read(resource, options, after=after)
            except NotFound:  # the entity the path navigates from is gone
                return found
            data = result.data
            assert isinstance(data, Collection)
            found.extend(e.id for e in data.items)
            after = data.next_keys
            if after is None:
                return found

    async def count(self, path: str, flt: str | None = None) -> int:
        """How many entities are at ``path`` (a collection) that pass ``flt``; 0 when the path leads nowhere."""
        params = {"$count": "true", "$top": "0"}
        if flt is not None:
            params["$filter"] = flt
        try:
            result = await self.service.read(parse_path(self.service.registry, path), parse_options(params))
        except NotFound:
            return 0
        assert isinstance(result.data, Collection)
        return result.data.count or 0

    # -- writing ---------------------------------------------------------------------------

    async def delete(self, path: str) -> bool:
        """Delete the entity at ``path``; False when it is gone already (removed with another one)."""
        if self.dry_run:
            return True
        try:
            await self.service.delete(parse_path(self.service.registry, path))
        except NotFound:
            return False
        return True

    def removed(self, entity_set: str, id_: int) -> None:
        ids = self.report.removed.setdefault(entity_set, [])
        if id_ not in ids:
            ids.append(id_)

    # -- the steps ---------------------------------------------------------------------------

    def owned(self, prefix: str = "") -> str:
        """Filter: the (Multi)Datastream at ``prefix`` is the owner's or one of the owner's Things'."""
        return " or ".join(
            f"{prefix}{parent}{via}/properties/owner eq {self.q}"
            for parent in ("Datastream", "MultiDatastream")
            for via in ("", "/Thing")
        )

    async def candidates(self) -> tuple[list[int], list[int]]:
        """Step 1: the Locations and FeaturesOfInterest that may be left unused by the erasure."""
        locations = await self.ids(
            "Locations",
            f"Things/properties/owner eq {self.q} or HistoricalLocations/Thing/properties/owner eq {self.q}",
        )
        features = await self.ids("FeaturesOfInterest", self.owned("Observations/"))
        return locations, features

    async def remove_parent(self, entity_set: str, id_: int) -> None:
        """Remove a Datastream or MultiDatastream, counting its Observations first."""
        observations = await self.count(f"{entity_set}({id_})/Observations")
        if await self.delete(f"{entity_set}({id_})"):
            self.report.observations += observations
            self.removed(entity_set, id_)

    async def remove_datastreams(self) -> bool:
        """Step 2: the owner's Datastreams and MultiDatastreams, with their Observations; whether any were found."""
        found = False
        for entity_set in ("Datastreams", "MultiDatastreams"):
            for id_ in await self.ids(entity_set, f"properties/owner eq {self.q}"):
                if id_ in self.report.removed.get(entity_set, ()):
                    continue  # a dry run finds them again
                found = True
                await self.remove_parent(entity_set, id_)
        return found

    async def remove_things(self) -> bool:
        """Step 3: the owner's Things, with their Datastreams, MultiDatastreams (and their Observations) and
        HistoricalLocations; whether any were found."""
        found = False
        for thing in await self.ids("Things", f"properties/owner eq {self.q}"):
            if thing in self.report.removed.get("Things", ()):
                continue
            found = True
            parents: dict[str, list[int]] = {}
            observations = 0
            for entity_set in ("Datastreams", "MultiDatastreams"):
                parents[entity_set] = []
                for id_ in await self.ids(f"Things({thing})/{entity_set}"):
                    if id_ in self.report.removed.get(entity_set, ()):
                        continue  # removed in step 2 already (or would be, on a dry run)
                    parents[entity_set].append(id_)
                    observations += await self.count(f"{entity_set}({id_})/Observations")
            history = await self.ids(f"Things({thing})/HistoricalLocations")
            if await self.delete(f"Things({thing})"):
                self.removed("Things", thing)
                self.report.observations += observations
                for entity_set, ids in parents.items():
                    for id_ in ids:
                        self.removed(entity_set, id_)
                for id_ in history:
                    self.removed("HistoricalLocations", id_)
        return found

    async def location_unused(self, id_: int) -> bool:
        """Whether Location ``id_`` is (or, on a dry run, would be) linked to no Thing and no HistoricalLocation."""
        things = await self.count(f"Locations({id_})/Things")
        things -= await self.count(f"Locations({id_})/Things", f"properties/owner eq {self.q}")
        if things > 0:
            return False
        history = await self.count(f"Locations({id_})/HistoricalLocations")
        history -= await self.count(f"Locations({id_})/HistoricalLocations", f"Thing/properties/owner eq {self.q}")
        return history <= 0

    async def feature_unused(self, id_: int) -> bool:
        """Whether FeatureOfInterest ``id_`` has (or, on a dry run, would have) no Observations left."""
        left = await self.count(f"FeaturesOfInterest({id_})/Observations")
        left -= await self.count(f"FeaturesOfInterest({id_})/Observations", self.owned())
        return left <= 0

    async def remove_unused(self, entity_set: str, ids: list[int]) -> None:
        """Step 4: of ``ids`` (Locations or FeaturesOfInterest), those nothing uses any more."""
        unused = self.location_unused if entity_set == "Locations" else self.feature_unused
        for id_ in sorted(set(ids)):
            if await unused(id_):
                if await self.delete(f"{entity_set}({id_})"):
                    self.removed(entity_set, id_)
            elif await self.exists(entity_set, id_):
                self.report.kept.setdefault(entity_set, []).append(id_)

    async def exists(self, entity_set: str, id_: int) -> bool:
        return bool(await self.ids(entity_set, f"id eq {id_}"))


def _progress(text: str) -> None:
    print(f"stadsdata erase: {text}", file=sys.stderr)


async def erase_owner(service: Service, owner: str, *, dry_run: bool = False) -> ErasureReport:
    """Remove (on a dry run: find) everything of ``owner`` (``properties.owner``) and what only it used.

    1. the Locations of the owner's Things (now or in their HistoricalLocations) and the FeaturesOfInterest
       of the Observations of the owner's Datastreams and MultiDatastreams are noted;
    2. the owner's Datastreams and MultiDatastreams are deleted, with their Observations;
    3. the owner's Things, with their Datastreams, MultiDatastreams and HistoricalLocations;
    4. of the Locations and FeaturesOfInterest noted, those nothing uses any more; the others are kept.

    Steps 2 and 3 are repeated while they find more (data written meanwhile).
    """
    eraser = _Eraser(service, owner, dry_run)
    _progress(f"owner {owner!r}: finding Locations and FeaturesOfInterest")
    locations, features = await eraser.candidates()
    for round_ in range(ROUNDS):
        _progress(f"owner {owner!r}: {'finding' if dry_run else 'removing'} Datastreams and MultiDatastreams")
        found = await eraser.remove_datastreams()
        _progress(f"owner {owner!r}: {'finding' if dry_run else 'removing'} Things")
        found = await eraser.remove_things() or found
        if dry_run or not found or round_ == ROUNDS - 1:
            break
        more_locations, more_features = await eraser.candidates()
        locations += more_locations
        features += more_features
    _progress(f"owner {owner!r}: {'finding' if dry_run else 'removing'} unused Locations and FeaturesOfInterest")
    await eraser.remove_unused("Locations", locations)
    await eraser.remove_unused("FeaturesOfInterest", features)
    report = eraser.report
    report.removed = {name: sorted(ids) for name, ids in report.removed.items()}
    report.kept = {name: sorted(ids) for name, ids in report.kept.items()}
    return report
