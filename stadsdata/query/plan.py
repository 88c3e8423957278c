"""The planner: resource path + query options + access policy → a read plan.

The plan is the only thing the stores see of a read request. It is checked
against the registry here, so the stores can compile it without checks of
their own. The access policy is applied here, once, for the target entity
set, every step of the path and every ``$expand``: every path to data
passes through ``plan_read``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from stadsdata.errors import BadRequest, QuerySyntaxError
from stadsdata.model.entities import EntityType, Registry, Relation
from stadsdata.query.ast import Apply, BinaryOp, Expand, Expr, OrderBy, QueryOptions
from stadsdata.query.check import check_apply, check_expression, check_orderby
from stadsdata.query.path import ResourcePath

ID_NAMES = ("@iot.id", "id")


class Policy(Protocol):
    """Decides which rows of an entity set a request may see.

    ``restrict`` returns a filter expression that every visible row of
    ``entity`` satisfies, or ``None`` for no restriction.
    """

    def restrict(self, entity: EntityType) -> Expr | None: ...

    def disclosure(self, entity: EntityType) -> Disclosure | None:
        """Rows of ``entity`` that aggregates ($apply) may include although the reader may not see them, and the
        rule that protects them; None: aggregates see what the reader sees."""
        ...

    def implied(self, source: EntityType, relation: Relation) -> bool:
        """Whether every row reached through ``relation`` from a row of ``source`` the reader sees is one it may see
        (then that step needs no restriction of its own: ``Datastreams(1)/Observations``)."""
        ...


@dataclass(frozen=True)
class Disclosure:
    """Disclosure control of aggregates: a group with rows that pass ``hidden`` (other people's personal data) is
    shown only when at least ``min_owners`` distinct owners contribute personal rows (``personal``: theirs, or the
    reader's own) to it; a group with fewer is left out. The owner of a row is the ``owner`` access column of the
    row it refers to through one of ``owner_via``."""

    hidden: Expr
    personal: Expr
    min_owners: int
    owner_via: tuple[str, ...]


class OpenPolicy:
    """Everything is visible."""

    def restrict(self, entity: EntityType) -> Expr | None:
        return None

    def disclosure(self, entity: EntityType) -> Disclosure | None:
        return None

    def implied(self, source: EntityType, relation: Relation) -> bool:
        return True


@dataclass(frozen=True)
class Paging:
    default_top: int = 100
    max_top: int = 10_000


@dataclass(frozen=True)
class Step:
    """One step of the scope: rows of ``entity`` reached through ``via``, optionally one ``id``.

    ``restriction`` is the policy's filter for ``entity``.
    """

    entity: EntityType
    via: Relation | None
    id: int | None
    restriction: Expr | None = None


@dataclass(frozen=True)
class ReadPlan:
    """What to read: the rows of ``entity`` within ``steps`` that pass ``filter``."""

    entity: EntityType
    steps: tuple[Step, ...]
    filter: Expr | None = None
    orderby: tuple[OrderBy, ...] = ()
    top: int = 100
    skip: int = 0
    count: bool = False
    select: tuple[str, ...] | None = None
    expand: tuple[ExpandPlan, ...] = ()
    result_format: str | None = None
    single: bool = False
    after: tuple[Any, ...] | None = None  # sort keys of the last row of the previous page
    # $count may be the database's estimate when that is above this many rows (0: always exact)
    estimate_count: int = 0
    # The option the expressions were written in when that is not their own ($filter,
    # $orderby): "$expand" for the plan of an $expand item. Errors name it.
    within: str | None = None
    # $apply: the rows that pass ``filter`` (which then includes the $apply filter) are grouped and
    # aggregated; ``orderby`` names the results, ``after`` holds the sort keys of the last group.
    apply: Apply | None = None
    # The access policy, when it restricts anything: the rows a filter reaches through a relation to many
    # (``Datastreams/name eq 'x'``) are those it lets the reader see.
    guard: Policy | None = None
    # $apply over rows that include other people's personal data under disclosure control.
    disclosure: Disclosure | None = None

    def selects(self, name: str) -> bool:
        return self.select is None or name in self.select

    @property
    def select_id(self) -> bool:
        return self.select is None or any(n in self.select for n in ID_NAMES)


@dataclass(frozen=True)
class ExpandPlan:
    relation: Relation
    plan: ReadPlan = field(repr=False)
    options: QueryOptions = field(default_factory=QueryOptions, repr=False)  # as requested, for next links


def _guard(policy: Policy) -> Policy | None:
    return None if isinstance(policy, OpenPolicy) else policy


def _and(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None:
        return b
    if b is None:
        return a
    return BinaryOp("and", a, b)


def _check_select(
    entity: EntityType, select: tuple[str, ...] | None, within: str | None = None
) -> tuple[str, ...] | None:
    if select is None:
        return None
    for name in select:
        if name in ID_NAMES or entity.property(name) or entity.relation(name):
            continue
        if name in ("@iot.selfLink",):
            continue
        known = [p.name for p in entity.properties] + [r.name for r in entity.relations]
        raise QuerySyntaxError(
            f"{entity.name} has no property or relation {name!r}; it has @iot.id, {', '.join(known)}",
            option=within or "$select",
        )
    return select


def _options_plan(
    registry: Registry,
    entity: EntityType,
    options: QueryOptions,
    policy: Policy,
    paging: Paging,
    steps: tuple[Step, ...],
    single: bool,
    within: str | None = None,
    implied: bool = False,
) -> ReadPlan:
    """Plan the options for ``entity``; the policy applies to the target unless
    ``steps`` already carry it (then the last step holds the restriction).

    ``within``: the option these options were written in (``$expand`` for an
    item's nested options), which errors then name; positions already count
    from its start.
    """
    if options.filter is not None:
        check_expression(registry, entity, options.filter, within or "$filter")
    for ob in options.orderby:
        check_orderby(registry, entity, ob.expr, within or "$orderby")
    if options.result_format not in (None, "dataArray"):
        raise QuerySyntaxError(
            f"unknown result format {options.result_format!r}; use dataArray", option=within or "$resultFormat"
        )
    if options.result_format is not None and entity.name not in ("Observation",):
        raise QuerySyntaxError("$resultFormat=dataArray applies to Observations only", option=within or "$resultFormat")
    top = paging.default_top if options.top is None else options.top
    expands = []
    for item in options.expand:
        expands.append(_expand_plan(registry, entity, item, policy, paging))
    return ReadPlan(
        entity=entity,
        steps=steps,
        filter=options.filter if steps or implied else _and(policy.restrict(entity), options.filter),
        orderby=options.orderby,
        top=min(top, paging.max_top),
        skip=options.skip or 0,
        count=bool(options.count),
        select=_check_select(entity, options.select, within),
        expand=tuple(expands),
        result_format=options.result_format,
        single=single,
        within=within,
        guard=_guard(policy),
    )


def _expand_plan(registry: Registry, entity: EntityType, item: Expand, policy: Policy, paging: Paging) -> ExpandPlan:
    rel = entity.relation(item.relation)
    if rel is None:
        names = ", ".join(r.name for r in entity.relations)
        raise QuerySyntaxError(
            f"{entity.name} has no relation {item.relation!r} to expand; it has {names}",
            option="$expand",
            position=item.pos,
        )
    target = registry.target(rel)
    implied = policy.implied(entity, rel)  # the parent is visible: so is what it leads to (else restricted here)
    plan = _options_plan(
        registry, target, item.options, policy, paging, (), single=not rel.many, within="$expand", implied=implied
    )
    return ExpandPlan(rel, plan, item.options)


def plan_read(
    registry: Registry,
    path: ResourcePath,
    options: QueryOptions,
    policy: Policy | None = None,
    paging: Paging | None = None,
    after: tuple[Any, ...] | None = None,
) -> ReadPlan:
    """Check ``options`` against the path's entity type and build the read plan."""
    policy = policy or OpenPolicy()
    paging = paging or Paging()
    segments = path.segments
    steps = tuple(
        Step(
            s.entity,
            s.relation,
            s.id,
            None
            if i and s.relation is not None and policy.implied(segments[i - 1].entity, s.relation)
            else policy.restrict(s.entity),
        )
        for i, s in enumerate(segments)
    )
    single = not path.is_collection
    if single and path.property is None and (options.filter is not None and not path.ref):
        # A filter on a single entity is allowed by OData but has no effect on
        # which entity is returned; reject it so that nobody relies on it.
        raise BadRequest("$filter applies to collections, not to a single entity")
    if options.apply is not None:
        return _apply_plan(registry, path, options, options.apply, policy, paging, steps, after)
    plan = _options_plan(registry, path.target, options, policy, paging, steps, single)
    return plan if after is None else replace(plan, after=after)


def _apply_plan(
    registry: Registry,
    path: ResourcePath,
    options: QueryOptions,
    apply: Apply,
    policy: Policy,
    paging: Paging,
    steps: tuple[Step, ...],
    after: tuple[Any, ...] | None,
) -> ReadPlan:
    """The plan of a ``$apply`` request: the aggregated rows of an Observation collection."""
    if not path.is_collection or path.property is not None or path.ref:
        raise QuerySyntaxError(
            f"$apply aggregates a collection of Observations; {path.text()} is not one", option="$apply", position=0
        )
    others = [
        name
        for name, given in (
            ("$filter", options.filter is not None),
            ("$select", options.select is not None),
            ("$expand", bool(options.expand)),
            ("$resultFormat", options.result_format is not None),
        )
        if given
    ]
    if others:
        raise QuerySyntaxError(
            f"{', '.join(others)} cannot be combined with $apply; filter inside it: $apply=filter(...)/groupby(...)",
            option=others[0],
        )
    entity = path.target
    check_apply(registry, entity, apply, options.orderby)
    top = paging.default_top if options.top is None else options.top
    # Over a whole entity set (not under a path, whose steps the reader must see), aggregates may also count
    # other people's personal data, under disclosure control.
    whole_set = len(steps) == 1 and steps[0].id is None and steps[0].restriction is not None
    disclosure = policy.disclosure(entity) if whole_set else None
    if disclosure is not None:
        restriction = steps[0].restriction
        assert restriction is not None
        steps = (replace(steps[0], restriction=BinaryOp("or", restriction, disclosure.hidden)),)
    return ReadPlan(
        entity=entity,
        steps=steps,
        disclosure=disclosure,
        filter=apply.filter if steps else _and(policy.restrict(entity), apply.filter),
        orderby=options.orderby,
        top=min(top, paging.max_top),
        skip=options.skip or 0,
        count=bool(options.count),
        within="$apply",
        apply=apply,
        after=after,
        guard=_guard(policy),
    )
