"""CreateObservations bodies (SensorThings 1.1, section 14.4), checked row by row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from stadsdata.errors import STAError, ValidationError
from stadsdata.model.entities import OBSERVATION, Kind
from stadsdata.model.validate import check_json, check_value, parse_id_value
from stadsdata.model.values import parse_instant, parse_instant_or_interval

CREATE_COMPONENTS = (
    "phenomenonTime",
    "result",
    "resultTime",
    "resultQuality",
    "validTime",
    "parameters",
    "FeatureOfInterest/id",
)


@dataclass
class ObservationRows:
    """The rows of one dataArray of a CreateObservations request, checked.

    ``names`` are the Observation properties given (the components without
    ``FeatureOfInterest/id``); ``rows[i]`` is ``(values, feature_id)`` with
    the values in ``names`` order, or the error message for that row.
    Tuples, not dicts: this is the bulk path.
    """

    datastream_id: int
    multi: bool = False  # the rows belong to a MultiDatastream
    names: tuple[str, ...] = ()
    rows: list[tuple[tuple[Any, ...], int | None] | str] = field(default_factory=list)


def parse_create(body: object) -> list[ObservationRows]:
    """Check a CreateObservations body; a malformed group is a 400, a malformed row an error for that row."""
    if not isinstance(body, list):
        raise ValidationError(
            'CreateObservations takes a JSON array of {"Datastream": {"@iot.id": 1}, "components": [...], '
            '"dataArray": [[...], ...]}',
            field="body",
        )
    groups = []
    for gi, group in enumerate(body):
        where = f"[{gi}]"
        if not isinstance(group, dict):
            raise ValidationError(f"{where} must be an object with Datastream, components and dataArray", field=where)
        multi = "MultiDatastream" in group
        parent_name = "MultiDatastream" if multi else "Datastream"
        ds = group.get(parent_name)
        if not isinstance(ds, dict) or ds.get("@iot.id") is None:
            raise ValidationError(f'{where}.{parent_name} must be {{"@iot.id": <id>}}', field=f"{where}.{parent_name}")
        ds_id = parse_id_value(ds["@iot.id"], f"{where}.{parent_name}.@iot.id")
        components = group.get("components")
        if not isinstance(components, list) or not components or not all(isinstance(c, str) for c in components):
            raise ValidationError(f"{where}.components must be a non-empty array of names", field=f"{where}.components")
        for comp in components:
            if comp not in CREATE_COMPONENTS:
                raise ValidationError(
                    f"{where}.components: unknown component {comp!r}; use {', '.join(CREATE_COMPONENTS)}",
                    field=f"{where}.components",
                )
        if "result" not in components:
            raise ValidationError(f"{where}.components must include result", field=f"{where}.components")
        if len(set(components)) != len(components):
            raise ValidationError(f"{where}.components names a component twice", field=f"{where}.components")
        rows = group.get("dataArray")
        if not isinstance(rows, list):
            raise ValidationError(f"{where}.dataArray must be an array of rows", field=f"{where}.dataArray")
        names = tuple(c for c in components if c != "FeatureOfInterest/id")
        groups.append(ObservationRows(ds_id, multi, names, _parse_rows(components, rows, f"{where}.dataArray")))
    return groups


def _time(value: object, where: str) -> tuple[int, int | None]:
    if type(value) is str and "/" not in value:
        return parse_instant(value, where), None
    return parse_instant_or_interval(value, where)


_CONTAINERS = (dict, list)


@lru_cache(maxsize=64)
def _row_parser(components: tuple[str, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """A function from one dataArray row to its checked values (in component order, without
    ``FeatureOfInterest/id``): one expression per component, generated once per component list,
    since this runs for every row of the bulk path."""
    parts = []
    for i, comp in enumerate(components):
        if comp == "FeatureOfInterest/id":
            continue
        prop = OBSERVATION.property(comp)
        assert prop is not None
        if prop.kind is Kind.ANY:  # free JSON: only containers need their nesting checked
            parts.append(f"(x if type(x := row[{i}]) not in _containers else _json(x, {comp!r}))")
        elif comp == "phenomenonTime":
            parts.append(f"_time(row[{i}], {comp!r})")
        else:
            parts.append(f"_check(_props[{comp!r}], row[{i}], {comp!r})")
    source = f"lambda row: ({', '.join(parts)},)"
    scope = {
        "_containers": _CONTAINERS,
        "_json": check_json,
        "_time": _time,
        "_check": check_value,
        "_props": {p.name: p for p in OBSERVATION.properties},
    }
    return eval(source, scope)  # type: ignore[no-any-return]  # noqa: S307 - fixed templates and component names


def _parse_rows(
    components: list[str], rows: list[object], where: str
) -> list[tuple[tuple[Any, ...], int | None] | str]:
    """Check every row; a row's problem becomes its error message.

    This is the bulk path: all rows are first parsed in one pass that assumes
    they are fine; only when one is not are they parsed one by one, so that
    each bad row gets its own message.
    """
    parse = _row_parser(tuple(components))
    width = len(components)
    if "FeatureOfInterest/id" not in components:
        try:
            if all(type(row) is list and len(row) == width for row in rows):
                return [(parse(row), None) for row in rows]  # type: ignore[arg-type]
        except STAError:
            pass
    feature_at = components.index("FeatureOfInterest/id") if "FeatureOfInterest/id" in components else -1
    out: list[tuple[tuple[Any, ...], int | None] | str] = []
    for ri, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            out.append(f"{where}[{ri}]: a row must be an array of {width} values, one per component")
            continue
        try:
            feature = row[feature_at] if feature_at >= 0 else None
            if feature is not None and (type(feature) is not int or feature < 0):
                feature = parse_id_value(feature, "FeatureOfInterest/id")
            values = parse(row)
        except STAError as exc:
            out.append(f"{where}[{ri}].{exc.message}")
            continue
        out.append((values, feature))
    return out
