"""Property values ⇄ SQL columns, generic over the property kinds.

Inside stadsdata a property value is: ``str`` (STRING, URI), ``dict``
(OBJECT), any JSON value (ANY), ``GeoValue`` on the way in and a GeoJSON
``dict`` on the way out (GEOMETRY), integer microseconds (INSTANT), a
``(start, end)`` tuple (INTERVAL; for INSTANT_OR_INTERVAL ``end`` is ``None``
for an instant), or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from stadsdata.model.entities import EntityType, Kind, Property
from stadsdata.model.values import GeoValue
from stadsdata.store.schema import columns_for

# Type tags of the ANY columns.
NULL, INT, FLOAT, STRING, BOOL, JSON = 0, 1, 2, 3, 4, 5
_MAX_EXACT = 2**53


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def encode_any(value: object) -> tuple[int, float | None, str | None, str | None]:
    if value is None:
        return NULL, None, None, None
    if isinstance(value, bool):
        return BOOL, float(value), None, None
    if isinstance(value, int):
        if -_MAX_EXACT <= value <= _MAX_EXACT:
            return INT, float(value), None, None
        return JSON, None, None, _dumps(value)
    if isinstance(value, float):
        return FLOAT, value, None, None
    if isinstance(value, str):
        return STRING, None, value, None
    return JSON, None, None, _dumps(value)


def decode_any(tag: int, number: float | None, string: str | None, json: str | None) -> object:
    if tag == INT:
        return int(number)  # type: ignore[arg-type]
    if tag == FLOAT:
        return number
    if tag == STRING:
        return string
    if tag == BOOL:
        return bool(number)
    if tag == JSON:
        return orjson.loads(json)  # type: ignore[arg-type]
    return None


def encode_property(prop: Property, value: object) -> list[object]:
    """The column values of one property, in ``columns_for`` order."""
    kind = prop.kind
    if kind is Kind.STRING or kind is Kind.URI:
        return [value]
    if kind is Kind.OBJECT or kind is Kind.ARRAY:
        return [None if value is None else _dumps(value)]
    if kind is Kind.ANY:
        return list(encode_any(value))
    if kind is Kind.GEOMETRY:
        if value is None:
            return [None, None, None, None, None]
        assert isinstance(value, GeoValue)
        return [_dumps(value.geojson), *value.bounds]
    if kind is Kind.INSTANT:
        return [value]
    if value is None:
        return [None, None]
    assert isinstance(value, tuple)
    return list(value)


@lru_cache(maxsize=512)
def column_names(prop: Property) -> tuple[str, ...]:
    return tuple(name for name, _ in columns_for(prop))


def encode(entity: EntityType, props: dict[str, object]) -> dict[str, object]:
    """Column → value for the given properties (only those present)."""
    out: dict[str, object] = {}
    for name, value in props.items():
        prop = entity.property(name)
        assert prop is not None, name
        out.update(zip(column_names(prop), encode_property(prop, value), strict=True))
    return out


def _encode_json(value: object) -> str | None:
    return None if value is None else _dumps(value)


def _encode_geometry(value: object) -> tuple[object, ...]:
    if value is None:
        return (None, None, None, None, None)
    assert isinstance(value, GeoValue)
    return (_dumps(value.geojson), *value.bounds)


_TEMPLATES = {
    Kind.STRING: "r[{i}]",
    Kind.URI: "r[{i}]",
    Kind.INSTANT: "r[{i}]",
    Kind.OBJECT: "_json(r[{i}])",
    Kind.ARRAY: "_json(r[{i}])",
    Kind.ANY: "*_any(r[{i}])",
    Kind.GEOMETRY: "*_geo(r[{i}])",
    Kind.INTERVAL: "*(r[{i}] or _none2)",
    Kind.INSTANT_OR_INTERVAL: "*(r[{i}] or _none2)",
}


# The narrow forms of a column set, chosen per request by looking at whole columns at once:
# a numeric result needs no string and JSON columns, an instant no end, an absent value no column.
_NARROW_TEMPLATES = {
    "float": ("_FLOAT, r[{i}]", ("_type", "_number")),
    "start": ("r[{i}][0]", ("_start",)),
}


_second: Callable[[Any], Any] = itemgetter(1)


def _narrow(prop: Property, values: list[object]) -> str | None:
    """The narrow form of ``prop``'s columns that fits every value, or None for the general one."""
    if values.count(None) == len(values) and prop.kind is not Kind.ANY:  # a null result still has its type
        return "absent"
    kinds = set(map(type, values))
    if prop.kind is Kind.ANY and kinds == {float}:
        return "float"
    if prop.kind is Kind.INSTANT_OR_INTERVAL and kinds == {tuple} and set(map(_second, values)) == {None}:
        return "start"
    return None


@lru_cache(maxsize=256)
def row_encoder(
    entity: EntityType, names: tuple[str, ...], forms: tuple[str | None, ...]
) -> tuple[tuple[str, ...], Callable[[Sequence[object]], tuple[object, ...]]]:
    """The columns and a function from a row of property values (in ``names`` order, then
    pass-through values) to their values: one expression per property in its ``forms``, built once
    per column set, so that the bulk path spends no time dispatching on kinds per row."""
    parts = []
    columns: list[str] = []
    for i, (name, form) in enumerate(zip(names, forms, strict=True)):
        prop = entity.property(name)
        assert prop is not None, name
        if form == "absent":
            continue
        if form is None:
            parts.append(_TEMPLATES[prop.kind].format(i=i))
            columns.extend(column_names(prop))
        else:
            template, suffixes = _NARROW_TEMPLATES[form]
            parts.append(template.format(i=i))
            columns.extend(prop.column + suffix for suffix in suffixes)
    source = f"lambda r: ({''.join(part + ', ' for part in parts)}*r[{len(names)}:])"
    scope = {
        "_json": _encode_json,
        "_any": encode_any,
        "_geo": _encode_geometry,
        "_none2": (None, None),
        "_FLOAT": FLOAT,
    }
    return tuple(columns), eval(source, scope)  # noqa: S307 - built from the fixed templates above


def encode_rows(
    entity: EntityType, names: tuple[str, ...], rows: Sequence[Sequence[object]]
) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The columns of properties ``names`` and each row's column values: the bulk path's encoder.

    Each row holds the property values in ``names`` order; values after them
    (foreign keys) are passed through unchanged. Columns that are NULL in every
    row are left out (binding them costs as much as a third of an insert).
    """
    forms = tuple(
        _narrow(entity.property(n), list(map(itemgetter(i), rows)))  # type: ignore[arg-type]
        for i, n in enumerate(names)
    )
    columns, encode_row = row_encoder(entity, names, forms)
    return columns, list(map(encode_row, rows))


_DECODE_TEMPLATES = {
    Kind.STRING: "row[{i}]",
    Kind.URI: "row[{i}]",
    Kind.INSTANT: "row[{i}]",
    Kind.OBJECT: "(None if row[{i}] is None else _loads(row[{i}]))",
    Kind.ARRAY: "(None if row[{i}] is None else _loads(row[{i}]))",
    Kind.GEOMETRY: "(None if row[{i}] is None else _loads(row[{i}]))",
    Kind.ANY: "_any(row[{i}], row[{i1}], row[{i2}], row[{i3}])",
    Kind.INTERVAL: "(None if row[{i}] is None else (row[{i}], row[{i1}]))",
}
_DECODE_DEFAULT = "(row[{i}], row[{i1}])"


def entity_decoder(
    props: Sequence[Property], fks: Sequence[str], make: Callable[..., Any]
) -> tuple[list[str], Callable[[Sequence[Any]], Any]]:
    """Columns to select after ``id`` for ``props`` and then one foreign key column per name in ``fks``,
    and a function from such a row to ``make(id, values, links)``.

    Generated once per shape, so that decoding a row is one expression (reads decode every row).
    """
    columns: list[str] = []
    parts: list[str] = []
    for prop in props:
        i = 1 + len(columns)
        template = _DECODE_TEMPLATES.get(prop.kind, _DECODE_DEFAULT)
        parts.append(f"{prop.name!r}: " + template.format(i=i, i1=i + 1, i2=i + 2, i3=i + 3))
        columns.extend(name for name, _ in columns_for(prop))
    links = [f"{name!r}: row[{1 + len(columns) + k}]" for k, name in enumerate(fks)]
    source = f"lambda row: _make(row[0], {{{', '.join(parts)}}}, {{{', '.join(links)}}})"
    scope = {"_loads": orjson.loads, "_any": decode_any, "_make": make}
    return columns, eval(source, scope)  # noqa: S307 - built from property names of the registry and fixed templates
