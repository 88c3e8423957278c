"""CreateObservations bodies (SensorThings 1.1, section 14.4), checked row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stadsdata.errors import STAError, ValidationError
from stadsdata.model.entities import OBSERVATION
from stadsdata.model.validate import check_value, parse_id_value

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

    ``rows[i]`` is ``(props, feature_id)`` or an error message for that row.
    """

    datastream_id: int
    multi: bool = False  # the rows belong to a MultiDatastream
    rows: list[tuple[dict[str, Any], int | None] | str] = field(default_factory=list)


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
        parsed = ObservationRows(ds_id, multi)
        for ri, row in enumerate(rows):
            parsed.rows.append(_parse_row(components, row, f"{where}.dataArray[{ri}]"))
        groups.append(parsed)
    return groups


def _parse_row(components: list[str], row: object, where: str) -> tuple[dict[str, Any], int | None] | str:
    if not isinstance(row, list) or len(row) != len(components):
        return f"{where}: a row must be an array of {len(components)} values, one per component"
    props: dict[str, Any] = {}
    feature: int | None = None
    try:
        for comp, value in zip(components, row, strict=True):
            if comp == "FeatureOfInterest/id":
                feature = parse_id_value(value, f"{where}.FeatureOfInterest/id")
                continue
            prop = OBSERVATION.property(comp)
            assert prop is not None
            props[comp] = check_value(prop, value, f"{where}.{comp}")
    except STAError as exc:
        return exc.message
    return props, feature
