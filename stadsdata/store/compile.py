"""Compile read plans into SQL (SQLAlchemy Core), the same for every SQL dialect.

A dialect object supplies the few pieces that differ between SQLite and
PostgreSQL (JSON member access). Values from requests are only ever bound
parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, Protocol

import shapely.errors
import shapely.wkt
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Exists,
    Float,
    FromClause,
    Integer,
    MetaData,
    Numeric,
    Select,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    distinct,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy import String as StringType

from stadsdata.errors import QuerySyntaxError
from stadsdata.model.entities import EntityType, FkOnSource, FkOnTarget, Kind, LinkTable, Registry, Relation
from stadsdata.model.values import to_micros
from stadsdata.query.ast import BinaryOp, Bucket, Call, Expr, Hidden, Literal, OrderBy, Path, Related, UnaryOp
from stadsdata.query.check import resolve_path
from stadsdata.query.plan import Disclosure, Policy, ReadPlan, Step
from stadsdata.store import codec
from stadsdata.store.counts import PARENT_COLUMNS
from stadsdata.store.functions import Value, any_number, compile_call
from stadsdata.store.hours import HOUR
from stadsdata.store.schema import columns_for
from stadsdata.store.timebucket import aligned_span

PARENT_ID = "parent_id"


class SqlDialect(Protocol):
    """What differs between the SQL stores' query text."""

    bbox_prefilter: bool
    """Whether geometry predicates should first compare the bounding-box columns."""
    lateral: bool
    """Whether the database has LATERAL subqueries."""

    def json_member(self, column: ColumnElement[Any], keys: Sequence[str]) -> ColumnElement[Any]: ...

    def json_as(self, member: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
        """A JSON member as ``kind``: text, number, string or bool (NULL when it holds another type)."""
        ...

    def index_of(self, text: ColumnElement[Any], part: ColumnElement[Any]) -> ColumnElement[Any]:
        """1-based position of ``part`` in ``text``, 0 when absent."""
        ...

    def order(self, column: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
        """An ORDER BY term with nulls first when ascending and last when descending."""
        ...

    def time_bucket(self, micros: ColumnElement[Any], bucket: Bucket) -> ColumnElement[Any]:
        """The start (microseconds) of the bucket of ``micros``; see ``store/timebucket.py``."""
        ...


_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
_ARITH = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}
_ARITH_OPS = ("add", "sub", "mul", "div", "mod")
_GUARD: ContextVar[Policy | None] = ContextVar("stadsdata_guard", default=None)
"""The access policy of the plan whose filter is being compiled: a filter over a collection (``Datastreams/name
eq 'x'``) only finds related rows the policy lets the reader see (to-one relations need nothing: what a visible
row refers to is visible)."""
_LOGICAL = ("and", "or")


class Compiler:
    def __init__(self, registry: Registry, metadata: MetaData, dialect: SqlDialect) -> None:
        self.registry = registry
        self.metadata = metadata
        self.dialect = dialect

    def table(self, entity: EntityType) -> FromClause:
        return self.metadata.tables[entity.table]

    # -- scope: which rows a resource path reaches ------------------------------------

    def _parent_ids(self, steps: Sequence[Step], param: bool) -> tuple[Any, ColumnElement[bool] | None]:
        """The ids of the rows that ``steps`` reach: a literal, a bind parameter or a subquery; and, for one id
        under a restriction, the condition that the row passes it.

        One id stays one value even under an access restriction, so that ``datastream_id = ?`` keeps the index
        order of ``Datastreams(1)/Observations`` (an ``IN (subquery)`` would have the rows sorted); whether
        the reader may see that Datastream is a separate, constant condition.
        """
        last = steps[-1]
        if len(steps) == 1 and last.id is not None:
            key: Any = bindparam(PARENT_ID, last.id) if param else last.id
            if last.restriction is None:
                return key, None
            alias = self.table(last.entity).alias()
            passes = self.condition(last.restriction, last.entity, alias)
            return key, exists(select(literal(1)).select_from(alias).where(alias.c.id == key, passes))
        alias = self.table(last.entity).alias()
        return select(alias.c.id).where(self.scope(steps, alias, param)), None

    def scope(self, steps: Sequence[Step], table: FromClause, param: bool = False) -> ColumnElement[bool]:
        """The condition on ``table`` (the last step's entity) that the path imposes.

        With ``param``, the first step's id is the bind parameter ``parent_id``
        so that one compiled statement serves every parent of an ``$expand``.
        """
        last = steps[-1]
        conds: list[ColumnElement[bool]] = []
        if last.id is not None:
            if len(steps) == 1 and param:
                conds.append(table.c.id == bindparam(PARENT_ID, last.id))
            else:
                conds.append(table.c.id == last.id)
        if last.restriction is not None:
            conds.append(self.condition(last.restriction, last.entity, table))
        if len(steps) > 1:
            assert last.via is not None
            parent_ids, parent_visible = self._parent_ids(steps[:-1], param)
            conds.append(self._via(last.via, parent_ids, steps[-2].entity, table))
            if parent_visible is not None:
                conds.append(parent_visible)
        return and_(true(), *conds)

    def _via(self, rel: Relation, parent_ids: Any, parent: EntityType, table: FromClause) -> ColumnElement[bool]:
        storage = self.registry.storage(rel)
        if isinstance(storage, FkOnTarget):
            col = table.c[storage.column]
            return col == parent_ids if not isinstance(parent_ids, Select) else col.in_(parent_ids)
        if isinstance(storage, FkOnSource):
            p = self.table(parent).alias()
            which = p.c.id.in_(parent_ids) if isinstance(parent_ids, Select) else p.c.id == parent_ids
            return table.c.id.in_(select(p.c[storage.column]).where(which))
        link = self.metadata.tables[storage.table].alias()
        src = link.c[storage.source_column]
        where = src == parent_ids if not isinstance(parent_ids, Select) else src.in_(parent_ids)
        return table.c.id.in_(select(link.c[storage.target_column]).where(where))

    def related(self, rel: Relation, source: FromClause, target: FromClause) -> ColumnElement[bool]:
        """The join condition between rows of ``rel``'s source and target."""
        storage = self.registry.storage(rel)
        if isinstance(storage, FkOnSource):
            return target.c.id == source.c[storage.column]
        if isinstance(storage, FkOnTarget):
            return target.c[storage.column] == source.c.id
        link = self.metadata.tables[storage.table].alias()
        # Both ends come from enclosing queries, which need not be the immediately enclosing one.
        return exists(
            select(literal(1))
            .select_from(link)
            .where(link.c[storage.source_column] == source.c.id, link.c[storage.target_column] == target.c.id)
            .correlate_except(link)
        )

    def related_rows(
        self, rel: Relation, source: FromClause, target: FromClause
    ) -> tuple[FromClause, ColumnElement[bool]]:
        """What to select from to reach the ``target`` rows of ``rel`` from a ``source`` row, and the condition.

        Through a link table that is ``target`` joined to the link rows, tied to
        ``source`` by the link's source column: a flat EXISTS whose only
        outside reference is ``source``, and which the link table's index serves.
        """
        storage = self.registry.storage(rel)
        if isinstance(storage, LinkTable):
            link = self.metadata.tables[storage.table].alias()
            joined = target.join(link, link.c[storage.target_column] == target.c.id)
            return joined, link.c[storage.source_column] == source.c.id
        return target, self.related(rel, source, target)

    # -- statements ----------------------------------------------------------------

    def where(
        self, plan: ReadPlan, table: FromClause, steps: Sequence[Step], param: bool = False
    ) -> ColumnElement[bool]:
        cond = self.scope(steps, table, param) if steps else true()
        if plan.filter is not None:
            guard = _GUARD.set(plan.guard)
            try:
                with reported_in(plan.within):
                    cond = and_(cond, self.condition(plan.filter, plan.entity, table))
            finally:
                _GUARD.reset(guard)
        return cond

    def page(self, plan: ReadPlan, columns: Sequence[str], steps: Sequence[Step], param: bool = False) -> Select[Any]:
        """Rows of one page (one more than ``top``, to tell whether a next page exists).

        The sort keys follow the requested columns, so that the next page can
        start after the last row (``plan.after``) instead of at an offset:
        pages stay correct while rows are inserted concurrently.
        """
        table = self.table(plan.entity)
        with reported_in(plan.within or "$orderby"):
            keys = self.sort_keys(plan.orderby, plan.entity, table)
        where = self.where(plan, table, steps, param)
        if plan.after is not None:
            where = and_(where, self.after(keys, plan.after))
        stmt = select(*(table.c[c] for c in columns), *(k for k, _ in keys)).where(where)
        stmt = stmt.order_by(*(self.dialect.order(k, desc) for k, desc in keys))
        if plan.single:
            return stmt.limit(2)
        stmt = stmt.limit(plan.top + 1)
        if plan.skip:
            stmt = stmt.offset(plan.skip)
        return stmt

    def count(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False, rows: bool = False) -> Select[Any]:
        """The count of the plan's rows; with ``rows``, the rows themselves (one column), to estimate their count."""
        table = self.table(plan.entity)
        return (
            select(table.c.id if rows else func.count()).select_from(table).where(self.where(plan, table, steps, param))
        )

    def countable(self, plan: ReadPlan, steps: Sequence[Step]) -> bool:
        """Whether ``counted`` answers the plan's count: a set of Observations that only its path restricts,
        all of them or those of the (Multi)Datastreams a path reaches.

        Under access control the set of all Observations carries the policy's restriction, which says through
        which Datastreams and MultiDatastreams an Observation is visible. A count row has the parent columns of
        the Observations it counts, so the same condition on it selects exactly the visible ones; a restriction
        that names anything else is not answered from the counts.
        """
        if "observation_counts" not in self.metadata.tables or plan.entity.table != "observations":
            return False
        if plan.filter is not None or plan.apply is not None or plan.single or not steps:
            return False
        last = steps[-1]
        if last.id is not None:
            return False
        if len(steps) == 1:
            return last.restriction is None or _on_parents(last.restriction)
        storage = self.registry.storage(last.via) if last.via is not None else None
        return last.restriction is None and isinstance(storage, FkOnTarget) and storage.column in PARENT_COLUMNS

    def counted(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False) -> Select[Any]:
        """The exact count of the plan's rows as the sum of the Observation counts per parent
        (``store/counts.py``); only for a plan that is ``countable``."""
        assert self.countable(plan, steps)
        counts = self.metadata.tables["observation_counts"]
        total = select(cast(func.coalesce(func.sum(counts.c["count"]), 0), BigInteger))
        last = steps[-1]
        if len(steps) == 1:
            if last.restriction is None:
                return total
            return total.where(self.condition(last.restriction, plan.entity, counts))
        assert last.via is not None
        storage = self.registry.storage(last.via)
        assert isinstance(storage, FkOnTarget)
        parent_ids, parent_visible = self._parent_ids(steps[:-1], param)
        column = counts.c[storage.column]
        where = column.in_(parent_ids) if isinstance(parent_ids, Select) else column == parent_ids
        return total.where(where) if parent_visible is None else total.where(where, parent_visible)

    def sort_keys(
        self, orderby: Sequence[OrderBy], entity: EntityType, table: FromClause
    ) -> list[tuple[ColumnElement[Any], bool]]:
        """(expression, descending) for each sort key; the id comes last and breaks ties."""
        keys: list[tuple[ColumnElement[Any], bool]] = []
        for ob in orderby:
            value = self.value(ob.expr, entity, table, "$orderby")
            cols = [value.sql] if value.kind != "any" else [value.cols[1], value.cols[2]]
            keys.extend((c, ob.descending) for c in cols)
        last_desc = bool(orderby) and orderby[-1].descending
        keys.append((table.c.id, last_desc))
        return keys

    @staticmethod
    def after(
        keys: Sequence[tuple[ColumnElement[Any], bool]], values: Sequence[Any], nullable_last: bool = False
    ) -> ColumnElement[bool]:
        """Rows that sort after ``values`` (nulls first when ascending, last when descending)."""
        if len(values) != len(keys) or not all(
            _fits(col, v, nullable=nullable_last or i < len(keys) - 1)
            for i, ((col, _), v) in enumerate(zip(keys, values, strict=True))
        ):
            raise QuerySyntaxError("the $skiptoken does not belong to this query", option="$skiptoken")

        def equal(col: ColumnElement[Any], v: Any) -> ColumnElement[bool]:
            return col.is_(None) if v is None else col == v

        def beyond(col: ColumnElement[Any], desc: bool, v: Any) -> ColumnElement[bool]:
            if desc:
                return false() if v is None else or_(col < v, col.is_(None))
            return col.is_not(None) if v is None else col > v

        alternatives = []
        for i, (col, desc) in enumerate(keys):
            alternatives.append(and_(*(equal(keys[j][0], values[j]) for j in range(i)), beyond(col, desc, values[i])))
        return or_(*alternatives)

    # -- $apply ----------------------------------------------------------------------

    def groups(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False) -> Subquery:
        """The groups of a ``$apply`` plan: from the hourly summaries where they give the same answer, else from
        the Observations."""
        span = self.hourly_span(plan, steps)
        if span is not None:
            return self.hourly(plan, steps, span, param)
        return self.grouped(plan, steps, param)

    def hourly_span(self, plan: ReadPlan, steps: Sequence[Step]) -> tuple[int, int] | None:
        """[start, end) of the phenomenonTime (start) of the rows of a ``$apply`` that the hourly summaries
        (``store/hours.py``) can answer; None when they cannot.

        That is: one Datastream's Observations (``Datastreams(7)/Observations``), filtered by nothing but a range of
        phenomenonTime with both ends, grouped by at most one bucket of phenomenonTime whose bounds are whole UTC
        hours over the range (a multiple of an hour, or a calendar unit, in a zone whose midnights fall on whole
        hours: ``timebucket.aligned_span``), aggregating ``result`` and ``$count``.
        """
        apply = plan.apply
        if apply is None or "observation_hours" not in self.metadata.tables or plan.entity.table != "observations":
            return None
        if plan.disclosure is not None or len(steps) != 2 or plan.filter is None:
            return None
        parent, last = steps
        storage = self.registry.storage(last.via) if last.via is not None else None
        if parent.id is None or last.id is not None or last.restriction is not None:
            return None
        if not isinstance(storage, FkOnTarget) or storage.column != "datastream_id":
            return None
        if len(apply.groupby) > 1 or any(a.method != "count" and a.path != Path(("result",)) for a in apply.aggregates):
            return None
        span = _time_range(plan.filter)
        if span is None:
            return None
        if apply.groupby:
            key = apply.groupby[0].value
            if not isinstance(key, Bucket) or key.path.segments != ("phenomenonTime",):
                return None
            if not key.unit and key.step % HOUR:
                return None
            hours = aligned_span(key.zone, HOUR)
            if hours is None or span[0] < hours[0] or span[1] > hours[1]:
                return None
        return span

    def hourly(self, plan: ReadPlan, steps: Sequence[Step], span: tuple[int, int], param: bool) -> Subquery:
        """``grouped`` from the hourly summaries of the whole hours of ``span`` that hold instants only, and from
        the Observations of the rest (the partial hours at either end, hours with an Observation over an
        interval) that pass the plan's filter. Same columns, same groups."""
        apply = plan.apply
        assert apply is not None
        obs = self.table(plan.entity)
        summaries = self.metadata.tables["observation_hours"]
        ds, visible = self._parent_ids(steps[:-1], param)
        first = -(-span[0] // HOUR) * HOUR  # the whole hours: [first, last)
        last = span[1] // HOUR * HOUR
        visibility = [] if visible is None else [visible]
        # The summaries of the range, read once (on the primary key, Datastream then hour) for both uses below.
        h = (
            select(summaries)
            .where(summaries.c.datastream_id == ds, summaries.c.hour >= first, summaries.c.hour < last, *visibility)
            .cte("h")
        )
        whole = select(
            h.c.hour.label("t"),
            h.c["count"].label("c"),
            h.c.numbers.label("nn"),
            h.c.sum.label("s"),
            h.c.min.label("lo"),
            h.c.max.label("hi"),
        ).where(h.c.intervals == 0)
        start = obs.c.phenomenon_time_start
        # The filter, a range of phenomenonTime (``_time_range``), is ``start >= span[0] and end < span[1]`` (the end
        # of an instant is its start). Written so, each part below has one lower and one upper bound on the start:
        # SQLite bounds an index range by one condition each way, which need not be the tightest.
        end = func.coalesce(obs.c.phenomenon_time_end, start)
        where = and_(self.scope(steps, obs, param), end < span[1])
        result = plan.entity.property("result")
        assert result is not None
        cols = tuple(obs.c[name] for name, _ in columns_for(result))
        n = any_number(Value("any", cols[1], cols=cols))

        def rows(*conditions: ColumnElement[bool], source: FromClause = obs) -> Select[Any]:
            return (
                select(
                    start.label("t"),
                    literal(1, BigInteger).label("c"),
                    case((n.is_(None), 0), else_=1).label("nn"),
                    n.label("s"),
                    n.label("lo"),
                    n.label("hi"),
                )
                .select_from(source)
                .where(where, *conditions)
            )

        # Whole hours with an Observation over an interval: their rows one by one (a filter on the end of an
        # interval need not hold for all of them), found from those hours (there are few), not from the rows.
        within = (start >= h.c.hour, start < h.c.hour + HOUR)
        if self.dialect.lateral:  # a nested loop by construction: PostgreSQL misjudges the size of the join
            each = rows(*within).lateral("x")
            mixed = select(*each.c).select_from(h.join(each, true())).where(h.c.intervals > 0)
        else:
            mixed = rows(h.c.intervals > 0, *within, source=obs.join(h, true()))
        parts = [whole, rows(start >= span[0], start < first), rows(start >= last, start < span[1]), mixed]
        if first >= last:
            parts = [rows(start >= span[0], start < span[1])]
        united = union_all(*parts).subquery("u")
        keys = []
        outputs: list[ColumnElement[Any]] = []
        if apply.groupby:
            key = apply.groupby[0]
            assert isinstance(key.value, Bucket)
            inner = select(
                self.time_bucket(united.c.t, key.value).label("k0"),
                *(united.c[c] for c in ("c", "nn", "s", "lo", "hi")),
            ).subquery("r")
            keys = [inner.c.k0]
            outputs.append(inner.c.k0.label(key.alias))
        else:
            inner = united
        for agg in apply.aggregates:
            value: ColumnElement[Any]
            if agg.method == "count":
                value = cast(func.coalesce(func.sum(inner.c.c), 0), BigInteger)  # 0, not null, without rows
            elif agg.method == "average":
                # The / operator itself: SQLAlchemy's division would make the divisor NUMERIC.
                divisor = func.nullif(cast(func.sum(inner.c.nn), Float), 0.0).self_group()
                value = func.sum(inner.c.s).op("/")(divisor)
            elif agg.method == "sum":
                value = func.sum(inner.c.s)
            else:
                value = func.min(inner.c.lo) if agg.method == "min" else func.max(inner.c.hi)
            outputs.append(value.label(agg.alias))
        stmt = select(*outputs).select_from(inner)
        if keys:
            stmt = stmt.group_by(*keys)
        return stmt.subquery("g")

    def grouped(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False) -> Subquery:
        """The groups of a ``$apply`` plan: one row per group, columns named by the result names.

        The group keys are computed in an inner query (so that each is written once: a
        bucket's bound values would differ between SELECT and GROUP BY), over the rows that
        the path and the filters select, on the (datastream, time) index.
        """
        apply = plan.apply
        assert apply is not None
        table = self.table(plan.entity)
        where = self.where(plan, table, steps, param)
        if plan.filter is not None:
            where = and_(where, *self._start_bounds(plan.filter, plan.entity, table))
        columns: list[ColumnElement[Any]] = []
        for i, key in enumerate(apply.groupby):
            if isinstance(key.value, Bucket):
                start = self.value(key.value.path, plan.entity, table, "$apply").sql
                columns.append(self.time_bucket(start, key.value).label(f"k{i}"))
            else:
                rel = plan.entity.relation(key.value.segments[0])
                assert rel is not None
                storage = self.registry.storage(rel)
                assert isinstance(storage, FkOnSource)
                columns.append(table.c[storage.column].label(f"k{i}"))
        result = plan.entity.property("result") if apply.aggregates else None
        if result is not None:
            cols = tuple(table.c[name] for name, _ in columns_for(result))
            columns.append(any_number(Value("any", cols[1], cols=cols)).label("n"))
        disclosure = plan.disclosure
        if disclosure is not None:
            columns.append(self._owner_if(disclosure.hidden, disclosure, plan.entity, table).label("o"))
            columns.append(self._owner_if(disclosure.personal, disclosure, plan.entity, table).label("p"))
        rows = select(*columns).where(where).subquery("r")
        keys = [rows.c[f"k{i}"] for i in range(len(apply.groupby))]
        outputs: list[ColumnElement[Any]] = [k.label(key.alias) for k, key in zip(keys, apply.groupby, strict=True)]
        for agg in apply.aggregates:
            if agg.method == "count":
                outputs.append(func.count().label(agg.alias))
            else:
                fn = getattr(func, {"average": "avg", "min": "min", "max": "max", "sum": "sum"}[agg.method])
                outputs.append(fn(rows.c.n).label(agg.alias))
        grouped = select(*outputs).select_from(rows).group_by(*keys)
        if disclosure is not None:
            hidden, owners = func.count(distinct(rows.c.o)), func.count(distinct(rows.c.p))
            grouped = grouped.having(or_(hidden == 0, owners >= disclosure.min_owners))
        return grouped.subquery("g")

    def time_bucket(self, micros: ColumnElement[Any], bucket: Bucket) -> ColumnElement[Any]:
        """The start of the bucket of ``micros``: where fixed buckets are whole multiples of their length since
        1970 UTC (``timebucket.aligned_span``: hourly buckets in Europe/Amsterdam) integer arithmetic, else the
        dialect's computation in the time zone, which costs far more per row."""
        general = self.dialect.time_bucket(micros, bucket)
        span = aligned_span(bucket.zone, bucket.step) if not bucket.unit else None
        if span is None:
            return general
        step = literal(bucket.step, BigInteger)
        # Grouped explicitly: custom operators are not parenthesised, and % must stay the bigint operator.
        start = (micros - micros.self_group().op("%")(step).self_group()).self_group()
        inside = and_(micros >= literal(span[0], BigInteger), micros < literal(span[1], BigInteger))
        return case((inside, start), else_=general)

    def _owner_if(
        self, cond: Expr, disclosure: Disclosure, entity: EntityType, table: FromClause
    ) -> ColumnElement[Any]:
        """The owner of a row that passes ``cond`` (disclosure control of an aggregate); NULL for other rows."""
        owners = []
        for name in disclosure.owner_via:
            rel = entity.relation(name)
            assert rel is not None
            storage = self.registry.storage(rel)
            assert isinstance(storage, FkOnSource)
            target = self.table(self.registry.target(rel)).alias()
            owners.append(select(target.c.owner).where(target.c.id == table.c[storage.column]).scalar_subquery())
        owner = owners[0] if len(owners) == 1 else func.coalesce(*owners)
        return case((self.condition(cond, entity, table), owner), else_=null())

    def apply_sort_keys(self, plan: ReadPlan, groups: Subquery) -> list[tuple[ColumnElement[Any], bool]]:
        """The order of the groups: ``$orderby`` on result names, then the group keys (unique together)."""
        apply = plan.apply
        assert apply is not None
        keys: list[tuple[ColumnElement[Any], bool]] = []
        named = set()
        for ob in plan.orderby:
            assert isinstance(ob.expr, Path)
            name = "/".join(ob.expr.segments)
            if name not in named:
                named.add(name)
                keys.append((groups.c[name], ob.descending))
        keys.extend((groups.c[k.alias], False) for k in apply.groupby if k.alias not in named)
        return keys

    def apply_page(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False) -> Select[Any]:
        """One page of groups (one more than ``top``), continuing after ``plan.after``."""
        apply = plan.apply
        assert apply is not None
        groups = self.groups(plan, steps, param)
        keys = self.apply_sort_keys(plan, groups)
        names = [k.alias for k in apply.groupby] + [a.alias for a in apply.aggregates]
        stmt = select(*(groups.c[n] for n in names), *(k for k, _ in keys))
        if plan.after is not None:
            if not keys:
                raise QuerySyntaxError("the $skiptoken does not belong to this query", option="$skiptoken")
            stmt = stmt.where(self.after(keys, plan.after, nullable_last=True))
        stmt = stmt.order_by(*(self.dialect.order(k, desc) for k, desc in keys)).limit(plan.top + 1)
        return stmt.offset(plan.skip) if plan.skip else stmt

    def apply_count(self, plan: ReadPlan, steps: Sequence[Step], param: bool = False) -> Select[Any]:
        return select(func.count()).select_from(self.groups(plan, steps, param))

    def _start_bounds(self, expr: Expr, entity: EntityType, table: FromClause) -> list[ColumnElement[bool]]:
        """Conditions on the start column implied by ``interval lt/le <time>`` terms of ``expr``'s conjunction.

        ``phenomenonTime lt t`` compares the end of the interval (the start for an instant), which
        no index has; since no interval ends before it starts, it implies ``start < t``, which
        bounds the range scanned on the (datastream, start) index. The result is the same.
        """
        bounds: list[ColumnElement[bool]] = []
        stack = [expr]
        while stack:
            node = stack.pop()
            if not isinstance(node, BinaryOp):
                continue
            if node.op == "and":
                stack += [node.left, node.right]
                continue
            op = node.op
            path, lit = node.left, node.right
            if isinstance(lit, Path) and isinstance(path, Literal):
                path, lit = lit, path
                op = {"gt": "lt", "ge": "le"}.get(op, "")
            if op not in ("lt", "le") or not isinstance(path, Path) or not isinstance(lit, Literal):
                continue
            if len(path.segments) != 1 or lit.type not in ("datetime", "date"):
                continue
            prop = entity.property(path.segments[0])
            if prop is None or prop.kind not in (Kind.INTERVAL, Kind.INSTANT_OR_INTERVAL):
                continue
            value = self.value(path, entity, table, "$apply")
            bounds.append(_COMPARE[op](value.sql, literal_value(lit).sql))
        return bounds

    # -- expressions ----------------------------------------------------------------

    def condition(self, expr: Expr, entity: EntityType, table: FromClause) -> ColumnElement[bool]:
        if isinstance(expr, BinaryOp) and expr.op in _LOGICAL:
            left = self.condition(expr.left, entity, table)
            right = self.condition(expr.right, entity, table)
            return and_(left, right) if expr.op == "and" else or_(left, right)
        if isinstance(expr, UnaryOp) and expr.op == "not":
            return negation(expr.operand, self.condition(expr.operand, entity, table))
        if isinstance(expr, Related):
            return self._related_rows_exist(expr, entity, table)
        related = self._through_relation(expr, entity, table)
        if related is not None:
            return related
        if isinstance(expr, BinaryOp) and expr.op in _COMPARE:
            a = self.value(expr.left, entity, table, "$filter")
            b = self.value(expr.right, entity, table, "$filter")
            check_comparable(expr, a, b)
            return compare(expr.op, a, b)
        value = self.value(expr, entity, table, "$filter")
        if value.kind == "bool":
            return value.sql == true()
        if value.kind == "any":
            return and_(value.cols[0] == codec.BOOL, value.cols[1] == 1.0)
        raise QuerySyntaxError(
            "this expression is not a condition (true or false)", option="$filter", position=_pos(expr)
        )

    def _through_relation(self, expr: Expr, entity: EntityType, table: FromClause) -> ColumnElement[bool] | None:
        """A predicate whose paths all start with the same relation: true when a related row satisfies it.

        ``Locations/name eq 'x'`` and ``st_within(Locations/location, …)`` become
        EXISTS over the related rows, so they hold when any related entity
        matches (FROST-Server's semantics). ``Datastream/@iot.id eq 3`` becomes a
        plain foreign-key comparison.
        """
        paths = list(_paths(expr))
        if not paths or any(len(p.segments) < 2 for p in paths):
            return None
        first = paths[0].segments[0]
        rel = entity.relation(first)
        if rel is None or any(p.segments[0] != first for p in paths):
            return None
        storage = self.registry.storage(rel)
        if (
            isinstance(storage, FkOnSource)
            and isinstance(expr, BinaryOp)
            and expr.op in _COMPARE
            and len(paths) == 1
            and paths[0].segments[1:] in (("@iot.id",), ("id",))
        ):
            other = expr.right if isinstance(expr.left, Path) else expr.left
            if isinstance(other, Literal):
                fk = Value("number", table.c[storage.column])
                ordered = (fk, literal_value(other)) if isinstance(expr.left, Path) else (literal_value(other), fk)
                return compare(expr.op, *ordered)
        target = self.registry.target(rel)
        alias = self.table(target).alias()
        inner = _strip_relation(expr, first)
        cond = self.condition(inner, target, alias)
        guard = _GUARD.get()
        restriction = guard.restrict(target) if guard is not None and not guard.implied(entity, rel) else None
        if restriction is not None:
            cond = and_(cond, self.condition(restriction, target, alias))
        rows, link = self.related_rows(rel, table, alias)
        return exists(select(literal(1)).select_from(rows).where(link, cond))

    def _related_rows_exist(self, expr: Related, entity: EntityType, table: FromClause) -> ColumnElement[bool]:
        """A policy's ``Related``: through a to-one relation the foreign key is in the ids of the target rows
        that pass (one uncorrelated subquery for the whole statement), else EXISTS over the related rows."""
        rel = entity.relation(expr.relation)
        assert rel is not None, (entity.name, expr.relation)
        target = self.registry.target(rel)
        alias = self.table(target).alias()
        cond = true() if expr.condition is None else self.condition(expr.condition, target, alias)
        storage = self.registry.storage(rel)
        if isinstance(storage, FkOnSource):
            if expr.condition is None:
                return table.c[storage.column].is_not(None)
            return table.c[storage.column].in_(select(alias.c.id).where(cond))
        rows, link = self.related_rows(rel, table, alias)
        return exists(select(literal(1)).select_from(rows).where(link, cond))

    def value(self, expr: Expr, entity: EntityType, table: FromClause, option: str) -> Value:
        if isinstance(expr, Literal):
            return literal_value(expr)
        if isinstance(expr, Hidden):
            return Value("string", table.c[expr.name])
        if isinstance(expr, Path):
            resolved = resolve_path(self.registry, entity, expr, option)
            if resolved.relations:
                return self._related_value(expr, entity, table, option)
            prop = resolved.property
            if prop is None:
                return Value("number", table.c.id)
            if resolved.json_keys:
                base = (
                    table.c[prop.column] if prop.kind in (Kind.OBJECT, Kind.ARRAY) else table.c[f"{prop.column}_json"]
                )
                member = self.dialect.json_member(base, resolved.json_keys)
                return Value("json", member, as_type=partial(self.dialect.json_as, member))
            cols = [table.c[name] for name, _ in columns_for(prop)]
            kind = prop.kind
            if kind in (Kind.STRING, Kind.URI):
                return Value("string", cols[0])
            if kind is Kind.INSTANT:
                return Value("time", cols[0])
            if kind in (Kind.INTERVAL, Kind.INSTANT_OR_INTERVAL):
                return Value("interval", cols[0], func.coalesce(cols[1], cols[0]))
            if kind is Kind.ANY:
                return Value("any", cols[1], cols=tuple(cols))
            if kind is Kind.GEOMETRY:
                return Value("geometry", cols[0], cols=tuple(cols))
            return Value("json", cols[0])
        if isinstance(expr, UnaryOp) and expr.op == "neg":
            inner = self.value(expr.operand, entity, table, option)
            return Value("number", -_number(inner, expr))
        if isinstance(expr, BinaryOp) and expr.op in _ARITH_OPS:
            left = _number(self.value(expr.left, entity, table, option), expr.left)
            right = _number(self.value(expr.right, entity, table, option), expr.right)
            if expr.op == "div":
                # NULLIF: division by zero is null (PostgreSQL would fail the whole query).
                return Value("number", left * 1.0 / func.nullif(right, 0))
            if expr.op == "mod":
                return Value("number", modulo(left, right))
            return Value("number", _ARITH[expr.op](left, right))
        if isinstance(expr, (BinaryOp, UnaryOp)):
            cond = self.condition(expr, entity, table)
            # A condition used as a value: comparisons and and/or are true or false, never null.
            return Value("bool", cond.is_(true()) if _two_valued(expr, cond) else cond)
        assert isinstance(expr, Call)
        args = [self.value(arg, entity, table, option) for arg in expr.args]
        return compile_call(expr, args, self.dialect)

    def _related_value(self, expr: Path, entity: EntityType, table: FromClause, option: str) -> Value:
        """A value reached through to-one relations, as a correlated scalar subquery."""
        resolved = resolve_path(self.registry, entity, expr, option)
        if any(r.many for r in resolved.relations):
            raise QuerySyntaxError(
                f"{'/'.join(expr.segments)} passes through a collection; compare it directly "
                "(e.g. Locations/name eq 'x') so that any related entity can match",
                option=option,
                position=expr.pos,
            )
        source, current = table, entity
        hops = []
        for rel in resolved.relations:
            target = self.registry.target(rel)
            alias = self.table(target).alias()
            hops.append((rel, source, alias))
            source, current = alias, target
        local = Path(expr.segments[len(resolved.relations) :], expr.pos)
        inner = self.value(local, current, source, option)

        def wrap(col: ColumnElement[Any]) -> ColumnElement[Any]:
            stmt = select(col)
            for rel, src, alias in hops:
                stmt = stmt.where(self.related(rel, src, alias))
            return stmt.select_from(*(alias for _, _, alias in hops)).scalar_subquery()

        if inner.kind == "any":
            return Value("any", wrap(inner.cols[1]), cols=tuple(wrap(c) for c in inner.cols))
        return Value(inner.kind, wrap(inner.sql), None if inner.end is None else wrap(inner.end))


@contextmanager
def reported_in(option: str | None) -> Iterator[None]:
    """Report the errors raised inside as errors of ``option`` (when given).

    The expressions of an ``$expand`` item are written inside the ``$expand``
    value, and their positions count from its start (see ``options.py``), so
    an error in one is an error of ``$expand`` at that position, not of a
    ``$filter`` the request does not have.
    """
    try:
        yield
    except QuerySyntaxError as exc:
        if option is None or exc.details.get("option") == option:
            raise
        raise relabelled(exc, option) from None


def relabelled(exc: QuerySyntaxError, option: str) -> QuerySyntaxError:
    """``exc`` as an error of ``option``, at the same position."""
    old, position = exc.details.get("option", ""), exc.details.get("position")
    prefix = f"{old} at position {position}: " if position is not None else f"{old}: "
    return QuerySyntaxError(exc.message.removeprefix(prefix), option=option, position=position)


def _paths(expr: Expr) -> Iterator[Path]:
    if isinstance(expr, Path):
        yield expr
    elif isinstance(expr, BinaryOp):
        yield from _paths(expr.left)
        yield from _paths(expr.right)
    elif isinstance(expr, UnaryOp):
        yield from _paths(expr.operand)
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from _paths(arg)


def _strip_relation(expr: Expr, name: str) -> Expr:
    """``expr`` with the leading ``name/`` removed from every path."""
    if isinstance(expr, Path):
        return Path(expr.segments[1:], expr.pos) if expr.segments[0] == name else expr
    if isinstance(expr, BinaryOp):
        return BinaryOp(expr.op, _strip_relation(expr.left, name), _strip_relation(expr.right, name), expr.pos)
    if isinstance(expr, UnaryOp):
        return UnaryOp(expr.op, _strip_relation(expr.operand, name), expr.pos)
    if isinstance(expr, Call):
        return Call(expr.name, tuple(_strip_relation(a, name) for a in expr.args), expr.pos)
    return expr


def _pos(expr: Expr) -> int:
    return getattr(expr, "pos", 0)


def _number(value: Value, expr: Expr) -> ColumnElement[Any]:
    if value.kind == "json":
        return value.typed("number")
    if value.kind in ("number", "time"):
        return value.sql
    if value.kind == "any":
        return any_number(value)
    raise QuerySyntaxError(f"expected a number, found a {value.kind}", option="$filter", position=_pos(expr))


def _start(expr: Expr) -> int:
    """Where the text of ``expr`` starts (a binary operation's own position is its operator's)."""
    while isinstance(expr, BinaryOp):
        expr = expr.left
    return _pos(expr)


def _two_valued(expr: Expr, compiled: ColumnElement[bool]) -> bool:
    """Whether ``expr`` is true or false in the standard even where its SQL is NULL.

    OData lifts comparisons so that a null operand makes them false (except
    ``eq null`` and ``ne null``), and ``and``/``or`` treat null as false. SQL
    gives NULL instead, which only differs from false under a ``not`` (or as a
    value). A function call such as ``startswith(result, 'x')`` stays null
    when its argument is null, and so does ``not`` of null. An EXISTS is never
    NULL.
    """
    if isinstance(compiled, Exists):
        return False
    return isinstance(expr, BinaryOp) and (expr.op in _COMPARE or expr.op in _LOGICAL)


def _time_range(expr: Expr) -> tuple[int, int] | None:
    """[start, end) of the phenomenonTime of instants that pass ``expr`` when it is nothing but a conjunction of
    ``phenomenonTime ge|gt|lt|le <date-time>`` with both a lower and an upper bound; else None."""
    lower: list[int] = []
    upper: list[int] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if not isinstance(node, BinaryOp):
            return None
        if node.op == "and":
            stack += [node.left, node.right]
            continue
        op, path, lit = node.op, node.left, node.right
        if isinstance(path, Literal) and isinstance(lit, Path):
            path, lit = lit, path
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, "")
        if not isinstance(path, Path) or path.segments != ("phenomenonTime",) or not isinstance(lit, Literal):
            return None
        if lit.type != "datetime" or not isinstance(lit.value, dt.datetime):
            return None
        at = to_micros(lit.value)
        if op == "ge":
            lower.append(at)
        elif op == "gt":
            lower.append(at + 1)
        elif op == "lt":
            upper.append(at)
        elif op == "le":
            upper.append(at + 1)
        else:
            return None
    if not lower or not upper:
        return None
    return max(lower), min(upper)


def _on_parents(expr: Expr) -> bool:
    """Whether ``expr`` (an access restriction of Observations) depends only on an Observation's Datastream and
    MultiDatastream: ``and``, ``or``, ``not`` of ``Related`` conditions through those, and constants."""
    if isinstance(expr, BinaryOp) and expr.op in _LOGICAL:
        return _on_parents(expr.left) and _on_parents(expr.right)
    if isinstance(expr, UnaryOp) and expr.op == "not":
        return _on_parents(expr.operand)
    if isinstance(expr, Related):
        return expr.relation in ("Datastream", "MultiDatastream")
    return isinstance(expr, BinaryOp) and isinstance(expr.left, Literal) and isinstance(expr.right, Literal)


def negation(operand: Expr, compiled: ColumnElement[bool]) -> ColumnElement[bool]:
    """``not operand``, with the standard's null semantics (see ``_two_valued``).

    Only a ``not`` needs the ``IS NOT TRUE`` form, so plain comparisons keep
    the shape that indexes serve (``phenomenon_time_start > ?``).
    """
    if _two_valued(operand, compiled):
        return compiled.is_not(true())
    return not_(compiled)


def modulo(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    """``a mod b`` as in OData and C: the sign follows the dividend; null when ``b`` is 0.

    Integer operands keep SQL's integer ``%``. Others use ``a - b * trunc(a / b)``
    because SQLite's ``%`` converts its operands to integers (2.5 % 2 is 0) and
    PostgreSQL has no ``%`` for double precision.
    """
    divisor = func.nullif(b, 0)
    if isinstance(a.type, Integer) and isinstance(b.type, Integer):
        return a % divisor
    return a - b * func.trunc(a / divisor)


_KIND_NOUNS = {"number": "number", "bool": "boolean", "time": "date-time", "interval": "date-time", "timeofday": "time"}


def check_comparable(expr: BinaryOp, left: Value, right: Value) -> None:
    """Refuse comparing a string with a number, boolean or time, which can never be equal or ordered.

    Untyped values (JSON members, the result, null) may be compared with anything.
    """
    kinds = {left.kind, right.kind}
    if "string" not in kinds:
        return
    other = next((k for k in (left.kind, right.kind) if k in _KIND_NOUNS), None)
    if other is None:
        return
    noun = _KIND_NOUNS[other]
    raise QuerySyntaxError(
        f"cannot compare a string with a {noun} ({expr.op}); a string compares with text, as in name eq 'x'",
        option="$filter",
        position=_start(expr),
    )


def literal_value(lit: Literal) -> Value:
    v = lit.value
    if lit.type == "null":
        return Value("null", null())
    if lit.type == "bool":
        return Value("bool", true() if v else false())
    if lit.type in ("int", "float"):
        return Value("number", literal(v))
    if lit.type == "string":
        return Value("string", literal(v))
    if lit.type == "datetime":
        assert isinstance(v, dt.datetime)
        return Value("time", literal(to_micros(v)))
    if lit.type == "date":
        assert isinstance(v, dt.date)
        return Value("time", literal(to_micros(dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC))))
    if lit.type == "time":
        assert isinstance(v, dt.time)
        us = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
        return Value("timeofday", literal(us))
    if lit.type == "geometry":
        assert isinstance(v, str)
        try:
            shape = shapely.wkt.loads(v)
        except (shapely.errors.ShapelyError, ValueError) as exc:
            raise QuerySyntaxError(f"not a valid WKT geometry: {exc}", option="$filter", position=lit.pos) from None
        if shape.is_empty:
            raise QuerySyntaxError("the geometry is empty", option="$filter", position=lit.pos)
        return Value("geometry", literal(v), bounds=tuple(shape.bounds))
    if lit.type == "duration":
        assert isinstance(v, dt.timedelta)
        return Value("number", literal(v // dt.timedelta(microseconds=1)))
    raise QuerySyntaxError(f"a {lit.type} literal cannot be used here", option="$filter", position=lit.pos)


def compare(op: str, left: Value, right: Value) -> ColumnElement[bool]:
    """Compare two typed operands with the standard's semantics for intervals and typed results."""
    if left.kind == "json" and right.kind in ("number", "string", "bool"):
        left = Value(right.kind, left.typed(right.kind))
    elif right.kind == "json" and left.kind in ("number", "string", "bool"):
        right = Value(left.kind, right.typed(left.kind))
    if left.kind == "any" or right.kind == "any":
        if right.kind == "any" and left.kind != "any":
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        tag, number, string, _ = left.cols
        if right.kind == "null":
            return tag == codec.NULL if op == "eq" else tag != codec.NULL
        if right.kind == "string":
            return and_(tag == codec.STRING, _COMPARE[op](string, right.sql))
        if right.kind == "bool":
            return and_(tag == codec.BOOL, _COMPARE[op](number, _bool_number(right)))
        # Not an IN list: those are rendered into the SQL text, and the statement could not be reused.
        return and_(or_(tag == codec.INT, tag == codec.FLOAT), _COMPARE[op](number, right.sql))
    if right.kind == "interval" and left.kind != "interval":
        left, right = right, left
        op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
    if left.kind == "interval":
        assert left.end is not None
        end = right.end if right.end is not None else right.sql
        if op == "eq":
            return and_(left.sql == right.sql, left.end == end)
        if op == "ne":
            return or_(left.sql != right.sql, left.end != end)
        if op in ("gt", "ge"):
            return _COMPARE[op](left.sql, end)  # type: ignore[no-any-return]
        return _COMPARE[op](left.end, right.sql)  # type: ignore[no-any-return]
    if right.kind == "null":
        return left.sql.is_(None) if op == "eq" else left.sql.is_not(None)
    if left.kind == "null":
        return right.sql.is_(None) if op == "eq" else right.sql.is_not(None)
    return _COMPARE[op](left.sql, right.sql)  # type: ignore[no-any-return]


def _bool_number(value: Value) -> ColumnElement[Any]:
    return literal(1.0) if value.sql is true() else literal(0.0) if value.sql is false() else value.sql


def _fits(col: ColumnElement[Any], value: Any, nullable: bool) -> bool:
    """Whether a $skiptoken value can be a value of the sort key ``col`` (the id, last, is never null)."""
    if value is None:
        return nullable
    if isinstance(value, bool):
        return False
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return False
    kind = col.type
    if isinstance(kind, Integer):
        return isinstance(value, int)
    if isinstance(kind, Numeric):
        return isinstance(value, (int, float))
    if isinstance(kind, StringType):
        return isinstance(value, str)
    return isinstance(value, (int, float, str))
