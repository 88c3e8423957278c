"""CreateObservations bodies (SensorThings 1.1, section 14.4), checked row by row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


Converter = Callable[[object, str], Any]


def _time(value: object, where: str) -> tuple[int, int | None]:
    if type(value) is str and "/" not in value:
        return parse_instant(value, where), None
    return parse_instant_or_interval(value, where)


def _converter(component: str) -> Converter:
    """How to check one component."""
    prop = OBSERVATION.property(component)
    assert prop is not None
    if prop.kind is Kind.ANY:
        return check_json
    if component == "phenomenonTime":
        return _time
    return lambda value, where: check_value(prop, value, where)


def _parse_rows(
    components: list[str], rows: list[object], where: str
) -> list[tuple[tuple[Any, ...], int | None] | str]:
    """Check every row; a row's problem becomes its error message.

    This is the bulk path, so the per-row work is kept small: one converter per
    component (a free JSON value only has its nesting checked).
    """
    feature_at = components.index("FeatureOfInterest/id") if "FeatureOfInterest/id" in components else -1
    plan = [(i, comp, _converter(comp)) for i, comp in enumerate(components) if comp != "FeatureOfInterest/id"]
    width = len(components)
    out: list[tuple[tuple[Any, ...], int | None] | str] = []
    for ri, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            out.append(f"{where}[{ri}]: a row must be an array of {width} values, one per component")
            continue
        try:
            feature = row[feature_at] if feature_at >= 0 else None
            if feature is not None and (type(feature) is not int or feature < 0):
                feature = parse_id_value(feature, "FeatureOfInterest/id")
            values = tuple([convert(row[i], comp) for i, comp, convert in plan])
        except STAError as exc:
            out.append(f"{where}[{ri}].{exc.message}")
            continue
        out.append((values, feature))
    return out
