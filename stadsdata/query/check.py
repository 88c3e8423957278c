"""Check expressions of ``$filter`` and ``$orderby`` against the registry.

Property paths are resolved here (``resolve_path``) so that a path that names
nothing gets a 400 that says where it is and what exists instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from stadsdata.errors import QuerySyntaxError
from stadsdata.model.entities import EntityType, FkOnSource, Kind, Property, Registry, Relation
from stadsdata.query.ast import Apply, BinaryOp, Bucket, Call, Expr, OrderBy, Path, UnaryOp

ID_SEGMENTS = ("@iot.id", "id")
_JSON_KINDS = (Kind.OBJECT, Kind.ARRAY, Kind.ANY)


@dataclass(frozen=True)
class ResolvedPath:
    """A path split into relations to follow, then the id or a property, then keys inside JSON."""

    relations: tuple[Relation, ...]
    entity: EntityType  # the entity type the property belongs to
    property: Property | None  # None: the path names the id
    json_keys: tuple[str, ...] = ()


def resolve_path(registry: Registry, entity: EntityType, path: Path, option: str) -> ResolvedPath:
    relations: list[Relation] = []
    current = entity
    segments = path.segments
    for i, seg in enumerate(segments):
        if seg in ID_SEGMENTS:
            if i != len(segments) - 1:
                raise QuerySyntaxError(
                    f"nothing may follow {seg} in {'/'.join(segments)}", option=option, position=path.pos
                )
            return ResolvedPath(tuple(relations), current, None)
        rel = current.relation(seg)
        if rel is not None:
            relations.append(rel)
            current = registry.target(rel)
            continue
        prop = current.property(seg)
        if prop is None:
            known = ["@iot.id"] + [p.name for p in current.properties] + [r.name for r in current.relations]
            raise QuerySyntaxError(
                f"{current.name} has no property or relation {seg!r}; it has {', '.join(known)}",
                option=option,
                position=path.pos,
            )
        keys = tuple(segments[i + 1 :])
        if keys and prop.kind not in _JSON_KINDS:
            raise QuerySyntaxError(
                f"{current.name}/{prop.name} is not a JSON object; it has no member {keys[0]!r}",
                option=option,
                position=path.pos,
            )
        return ResolvedPath(tuple(relations), current, prop, keys)
    raise QuerySyntaxError(
        f"{'/'.join(segments)} names a relation, not a value; add a property, as in {'/'.join(segments)}/@iot.id",
        option=option,
        position=path.pos,
    )


def check_expression(registry: Registry, entity: EntityType, expr: Expr, option: str) -> None:
    """Resolve every property path in ``expr``; raise a QuerySyntaxError for the first that names nothing."""
    if isinstance(expr, Path):
        resolve_path(registry, entity, expr, option)
    elif isinstance(expr, BinaryOp):
        check_expression(registry, entity, expr.left, option)
        check_expression(registry, entity, expr.right, option)
    elif isinstance(expr, UnaryOp):
        check_expression(registry, entity, expr.operand, option)
    elif isinstance(expr, Call):
        for arg in expr.args:
            check_expression(registry, entity, arg, option)


def check_orderby(registry: Registry, entity: EntityType, expr: Expr, option: str = "$orderby") -> None:
    check_expression(registry, entity, expr, option)
    if isinstance(expr, Path):
        resolved = resolve_path(registry, entity, expr, option)
        if any(r.many for r in resolved.relations):
            raise QuerySyntaxError(
                f"cannot order by {'/'.join(expr.segments)}: it passes through a collection",
                option=option,
                position=expr.pos,
            )
        prop = resolved.property
        if prop is not None and prop.kind is Kind.GEOMETRY:
            raise QuerySyntaxError(f"cannot order by the geometry {prop.name}", option=option, position=expr.pos)
        if prop is not None and prop.kind in (Kind.OBJECT, Kind.ARRAY) and not resolved.json_keys:
            raise QuerySyntaxError(
                f"cannot order by the object {prop.name}; order by one of its members, as in {prop.name}/key",
                option=option,
                position=expr.pos,
            )


_TIME_KINDS = (Kind.INSTANT, Kind.INTERVAL, Kind.INSTANT_OR_INTERVAL)


def check_apply(registry: Registry, entity: EntityType, apply: Apply, orderby: tuple[OrderBy, ...]) -> None:
    """Check a ``$apply`` against ``entity`` (only Observations are aggregated) and ``$orderby`` against its names."""
    option = "$apply"
    if entity.name != "Observation":
        raise QuerySyntaxError(
            f"$apply aggregates Observations; {entity.set_name} cannot be aggregated", option=option, position=0
        )
    if apply.filter is not None:
        check_expression(registry, entity, apply.filter, option)
    for key in apply.groupby:
        if isinstance(key.value, Bucket):
            path = key.value.path
            resolved = resolve_path(registry, entity, path, option)
            prop = resolved.property
            if resolved.relations or prop is None or prop.kind not in _TIME_KINDS or resolved.json_keys:
                times = ", ".join(p.name for p in entity.properties if p.kind in _TIME_KINDS)
                raise QuerySyntaxError(
                    f"bucket() takes a time of the {entity.name} ({times}), not {'/'.join(path.segments)}",
                    option=option,
                    position=path.pos,
                )
            continue
        path = key.value
        resolved = resolve_path(registry, entity, path, option)
        if (
            len(resolved.relations) != 1
            or resolved.property is not None
            or not isinstance(registry.storage(resolved.relations[0]), FkOnSource)
        ):
            to_one = [r.name for r in entity.relations if isinstance(registry.storage(r), FkOnSource) and not r.many]
            raise QuerySyntaxError(
                f"cannot group by {'/'.join(path.segments)}; group by bucket(...) or by "
                + ", ".join(f"{n}/@iot.id" for n in to_one),
                option=option,
                position=path.pos,
            )
    for agg in apply.aggregates:
        if agg.path is None:
            continue
        resolved = resolve_path(registry, entity, agg.path, option)
        prop = resolved.property
        if resolved.relations or prop is None or prop.kind is not Kind.ANY or resolved.json_keys:
            raise QuerySyntaxError(
                f"cannot aggregate {'/'.join(agg.path.segments)}: only the result is aggregated"
                f" (result with {agg.method} as {agg.alias})",
                option=option,
                position=agg.path.pos,
            )
    names = [k.alias for k in apply.groupby] + [a.alias for a in apply.aggregates]
    for ob in orderby:
        expr = ob.expr
        if not isinstance(expr, Path) or "/".join(expr.segments) not in names:
            raise QuerySyntaxError(
                f"with $apply, order by the names of the result ({', '.join(names)})",
                option="$orderby",
                position=getattr(expr, "pos", 0),
            )
