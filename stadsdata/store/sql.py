"""SQL shared by the SQL stores: reading plans and the write operations of a unit.

A ``SqlSession`` wraps one DBAPI connection. The dialect supplies only the
pieces that differ (JSON access, insert-or-ignore, how statements compile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ClauseElement

from stadsdata.model.entities import THING, EntityType, FkOnSource, LinkTable, Registry, Relation
from stadsdata.query.ast import BinaryOp, Call, Expr, UnaryOp
from stadsdata.query.plan import ReadPlan, Step
from stadsdata.store import codec, hours
from stadsdata.store.base import Collection, DeadLetter, Entity
from stadsdata.store.compile import PARENT_ID, Compiler, SqlDialect
from stadsdata.store.counts import COUNTS, PARENT_COLUMNS, row_deltas
from stadsdata.store.hours import HOURS
from stadsdata.store.pipeline import PipelinedConnection, Rows

_KEYS = (*PARENT_COLUMNS, "phenomenon_time_start")
"""What an Observation counts for: its parents (``counts.py``) and, with the first, its hour (``hours.py``)."""
_SUMMED = ("datastream_id", "phenomenon_time_start", "phenomenon_time_end", "result_type", "result_number")
"""The columns of an Observation that its hourly summary depends on, in the order ``hours.added`` is given."""
_CHANGED = (*PARENT_COLUMNS, *_SUMMED[1:])


class SqlStoreDialect(SqlDialect, Protocol):
    sa_dialect: Dialect
    lateral_expand: bool
    """Expand all parents in one statement (unnest(ids) CROSS JOIN LATERAL page), where each statement
    is a round trip to a server; an embedded database runs one cheap statement per parent instead."""

    array_rows: bool
    """Write many rows' bookkeeping (hourly summaries, counts) in one statement over array parameters (unnest),
    where each statement costs a round trip and the client's work per statement; an embedded database runs one
    cheap statement per row instead."""

    aggregate_setup: str | None
    """A statement run before a ``$apply`` query in its transaction (e.g. more memory for its grouping)."""

    def conflict_insert(self, table: Table) -> Any:
        """The dialect's INSERT into ``table``, which has ``on_conflict_do_nothing`` and ``on_conflict_do_update``."""
        ...

    def estimate_rows(self, conn: Any, sql: str, params: Any) -> int | None:
        """The planner's estimate of the rows ``sql`` returns, or None when the database has none."""
        ...

    def bulk_insert(
        self, conn: Any, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert ``rows`` with the database's fast path; return the new ids in order."""
        ...


Compiled = tuple[str, Callable[[dict[str, Any] | None], Sequence[Any] | dict[str, Any]]]


def compile_statement(stmt: ClauseElement, dialect: Dialect, cache: dict[Any, SQLCompiler] | None = None) -> Compiled:
    """SQL text and a function that gives its parameters (optionally overriding some).

    With ``cache``, statements that differ only in their bound values share
    one compiled form (SQLAlchemy's own cache key tells them apart), which
    saves most of the cost of a read. Statements must therefore not use
    IN-lists of varying length: those are rendered into the SQL text.
    """
    key = stmt._generate_cache_key() if cache is not None else None
    compiled: SQLCompiler | None = None
    if key is not None and cache is not None:
        compiled = cache.get(key.key)
        if compiled is None:
            if len(cache) > 4096:
                cache.clear()
            found = stmt.compile(dialect=dialect, cache_key=key, compile_kwargs={"render_postcompile": True})
            assert isinstance(found, SQLCompiler)
            compiled = cache[key.key] = found
    if compiled is None:
        found = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        assert isinstance(found, SQLCompiler)
        compiled = found
    extracted = key.bindparams if key is not None else None
    sql = str(compiled)
    positions = compiled.positiontup
    final = compiled
    if extracted is None and positions is not None:
        # The values are fixed at compile time: look them up directly instead of
        # asking SQLAlchemy each time (the prepared statements of the write path).
        defaults = compiled.construct_params(_check=False)
        order = tuple(positions)

        def fixed(override: dict[str, Any] | None) -> list[Any]:
            if not override:
                return [defaults[k] for k in order]
            return [override[k] if k in override else defaults[k] for k in order]

        return sql, fixed

    def values(override: dict[str, Any] | None) -> Any:
        return final.construct_params(params=override, extracted_parameters=extracted, _check=False)

    if positions is None:
        return sql, lambda override: dict(values(override))
    return sql, lambda override: [p[k] for p in (values(override),) for k in positions]


class _Slot:
    """Marks where the parent id goes among a statement's parameters."""


def _parent_binder(params: Callable[[dict[str, Any] | None], Any]) -> Callable[[int], Any]:
    """A fast ``parent id → parameters`` for a statement run once per parent (an expansion):
    SQLAlchemy builds the parameters once, each parent only fills in its id."""
    slot = _Slot()
    base = params({PARENT_ID: slot})
    if isinstance(base, list):
        at = [i for i, v in enumerate(base) if v is slot]

        def positional(parent_id: int) -> list[Any]:
            values = base.copy()
            for i in at:
                values[i] = parent_id
            return values

        return positional
    keys = [k for k, v in base.items() if v is slot]
    return lambda parent_id: {**base, **dict.fromkeys(keys, parent_id)}


def _calls_now(plan: ReadPlan) -> bool:
    """Whether the filter or the order of ``plan`` calls now()."""
    stack: list[Expr | None] = [plan.filter, *(o.expr for o in plan.orderby)]
    while stack:
        expr = stack.pop()
        if isinstance(expr, Call):
            if expr.name == "now":
                return True
            stack.extend(expr.args)
        elif isinstance(expr, BinaryOp):
            stack += [expr.left, expr.right]
        elif isinstance(expr, UnaryOp):
            stack.append(expr.operand)
    return False


class EntityShape:
    """The columns read for an entity type and how to decode a row of them."""

    def __init__(self, registry: Registry, entity: EntityType, select_: tuple[str, ...] | None) -> None:
        props = [p for p in entity.properties if select_ is None or p.name in select_]
        self.fks = [
            (rel.name, storage.column)
            for rel in entity.relations
            if isinstance(storage := registry.storage(rel), FkOnSource)
        ]
        prop_cols, self.decode = codec.entity_decoder(props, [name for name, _ in self.fks], Entity)
        self.columns = ["id", *prop_cols, *(col for _, col in self.fks)]


class _Returned:
    """The row a multi-row INSERT … RETURNING gives for ``id``, fetched when it is first read."""

    __slots__ = ("id", "rows", "shape")

    def __init__(self, shape: EntityShape, rows: Rows, id: int) -> None:
        self.shape = shape
        self.rows = rows
        self.id = id

    def entity(self) -> Entity:
        found: Entity = self.shape.decode(self.rows.row(self.id))
        return found


def _array_element(type_: Any) -> Any:
    """The element type of an array parameter for a column of ``type_``: a text type without its collation, which an
    array cast does not take. (psycopg dumps a list whose values are all of one Python type; the codec gives every
    value of a column the same type, e.g. a float for any numeric result.)"""
    return type(type_)() if isinstance(type_, String) else type_


class SqlSession:
    """One connection's worth of reading and writing."""

    def __init__(
        self,
        conn: Any,
        registry: Registry,
        metadata: MetaData,
        dialect: SqlStoreDialect,
        compiler: Compiler,
        statements: dict[Any, Compiled],
        compiled: dict[Any, SQLCompiler] | None = None,
        plans: dict[Any, Compiled] | None = None,
    ) -> None:
        self.compiled = compiled  # compiled query statements by cache key, shared by the store's sessions
        self.conn = conn
        self.statements = statements  # compiled statements shared by the store's sessions
        self.registry = registry
        self.metadata = metadata
        self.dialect = dialect
        self.compiler = compiler
        self.deferred: list[tuple[str, Any]] = []
        self._shapes: dict[tuple[str, tuple[str, ...] | None], EntityShape] = {}
        self.plans = plans if plans is not None else {}  # compiled read plans, shared by the store's sessions
        self.counting = "observation_counts" in metadata.tables
        """Whether the store keeps Observation counts per parent (``counts.py``)."""
        self.summing = self.counting and "observation_hours" in metadata.tables
        """Whether it keeps hourly summaries per Datastream too (``hours.py``)."""
        self.memo: dict[Any, Any] = {}
        """Lookups a write transaction repeats for every unit of a batch (does Datastream 7 exist, which
        FeatureOfInterest does its Thing's Location give), remembered until anything but an Observation is
        written, the transaction ends or a unit is rolled back (``forget``)."""
        self.inserted: dict[tuple[str, int], Entity | _Returned] = {}
        """New rows as their inserts returned them, by (table, id), each for one ``get``: the read that answers a
        create. Dropped when the row is changed, when anything is deleted (deletes cascade), and with ``memo``."""
        self.pipelined = isinstance(conn, PipelinedConnection)
        """Whether statements whose outcome is not needed at once are sent without waiting (``pipeline.py``)."""
        self._send = conn.send if self.pipelined else conn.execute
        self.units = 1
        """How many units the writer's current batch has: a pipelined insert takes ids for at least that many
        rows ahead (``PipelinedConnection.next_id``)."""

    # -- execution ------------------------------------------------------------------

    def _compile(self, stmt: ClauseElement) -> Compiled:
        return compile_statement(stmt, self.dialect.sa_dialect, self.compiled)

    def fetch(self, stmt: ClauseElement) -> list[tuple[Any, ...]]:
        sql, params = self._compile(stmt)
        cur = self.conn.execute(sql, params(None))
        return cur.fetchall()  # type: ignore[no-any-return]

    def rows(self, stmt: ClauseElement) -> list[tuple[Any, ...]]:
        return self.fetch(stmt)

    def scalar(self, stmt: ClauseElement) -> Any:
        rows = self.fetch(stmt)
        return rows[0][0] if rows else None

    def send(self, key: tuple[Any, ...], build: Callable[[], ClauseElement], **values: Any) -> None:
        """``run`` a statement whose outcome nobody waits for: pipelined, it goes out with the next ones."""
        sql, params = self.prepared(key, build)
        self._send(sql, params(values))

    def send_text(self, sql: str) -> None:
        """``send`` a statement without parameters (COMMIT)."""
        self._send(sql)

    def rowcount(self, cur: Any) -> int:
        """How many rows the statement of ``cur`` changed (known once what was sent is done)."""
        self.flush()
        return int(cur.rowcount)

    def flush(self) -> None:
        """Wait for what was sent; raise the error of a sent statement that failed."""
        if self.pipelined:
            self.conn.flush()

    def discard(self) -> None:
        """After a failure: stop waiting for what was sent (the transaction is rolled back)."""
        if self.pipelined:
            self.conn.discard()

    def forget(self) -> None:
        """Drop what ``memo`` holds: it may describe rows a rollback undid, or rows a write changed."""
        self.memo.clear()
        self.inserted.clear()

    def _written(self, table: str) -> None:
        if table != "observations":  # no lookup in the memo depends on Observation rows
            self.memo.clear()

    def execute(self, stmt: ClauseElement) -> int:
        self.memo.clear()
        self.inserted.clear()
        sql, params = self._compile(stmt)
        return self.rowcount(self.conn.execute(sql, params(None)))

    def shape(self, entity: EntityType, select_: tuple[str, ...] | None) -> EntityShape:
        key = (entity.name, select_)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = EntityShape(self.registry, entity, select_)
        return shape

    # -- reading plans ----------------------------------------------------------------

    def _plan_statement(self, kind: str, plan: ReadPlan, build: Callable[[], ClauseElement]) -> tuple[str, list[Any]]:
        """SQL and values for ``plan``, compiled once per plan that differs only in its first path id.

        Requests repeat: the same listing of another Datastream, the same
        entity by another id. The first step's id is a bind parameter, so all
        of them share one compiled statement and skip building it.
        """
        steps = plan.steps
        first = steps[0] if steps else None
        override = None
        key_plan = plan
        if first is not None and first.id is not None:
            override = {PARENT_ID: first.id}
            key_plan = replace(plan, steps=(replace(first, id=0), *steps[1:]))
        key: tuple[str, ReadPlan] | None = (kind, key_plan)
        try:
            found = self.plans.get(key)
        except TypeError:  # a value in the plan that cannot be hashed: compile this one on its own
            key, found = None, None
        if found is None and key is not None and _calls_now(plan):
            key = None  # now() is bound when compiled: such a plan is compiled for each request
        if found is None:
            found = self._compile(build())
            if key is not None:
                if len(self.plans) > 2048:
                    self.plans.clear()
                self.plans[key] = found
        sql, values = found
        return sql, values(override)  # type: ignore[return-value]

    def read(self, plan: ReadPlan) -> Entity | Collection | None:
        if plan.apply is not None:
            return self._aggregate(plan)
        shape = self.shape(plan.entity, plan.select)
        sql, values = self._plan_statement(
            "page", plan, lambda: self.compiler.page(plan, shape.columns, plan.steps, param=True)
        )
        rows = self.conn.execute(sql, values).fetchall()
        items = [shape.decode(r) for r in rows]
        width = len(shape.columns)
        for item, row in zip(items, rows, strict=True):
            item.keys = tuple(row[width:])
        if plan.single:
            self._expand(plan, items)
            return items[0] if items else None
        more = len(items) > plan.top
        del items[plan.top :]
        count = None
        estimated = False
        if plan.count and self.compiler.countable(plan, plan.steps):
            # Exact and cheap: a sum of the counts per parent.
            sql, values = self._plan_statement(
                "counted", plan, lambda: self.compiler.counted(plan, plan.steps, param=True)
            )
            count = int(self.conn.execute(sql, values).fetchone()[0])
        elif plan.count and plan.estimate_count:
            sql, values = self._plan_statement(
                "rows", plan, lambda: self.compiler.count(plan, plan.steps, param=True, rows=True)
            )
            guess = self.dialect.estimate_rows(self.conn, sql, values)
            if guess is not None and guess > plan.estimate_count:
                count, estimated = guess, True
        if plan.count and count is None:
            sql, values = self._plan_statement("count", plan, lambda: self.compiler.count(plan, plan.steps, param=True))
            count = self.conn.execute(sql, values).fetchone()[0]
        self._expand(plan, items)
        return Collection(items, count, more, estimated)

    def _aggregate(self, plan: ReadPlan) -> Collection:
        """The groups of a ``$apply`` plan, each as an ``Entity`` whose values are the result by name (id 0)."""
        apply = plan.apply
        assert apply is not None
        sql, values = self._plan_statement(
            "apply", plan, lambda: self.compiler.apply_page(plan, plan.steps, param=True)
        )
        if self.dialect.aggregate_setup is not None:
            self.conn.execute(self.dialect.aggregate_setup)
        rows = self.conn.execute(sql, values).fetchall()
        names = [k.alias for k in apply.groupby] + [a.alias for a in apply.aggregates]
        width = len(names)
        # A year of hourly groups is 8,760 rows: values only (zip stops after the names), no links or expansions
        # (the empty dicts are shared), and the sort keys only of the last group, where the next page starts.
        none: dict[str, Any] = {}
        items = [Entity(0, dict(zip(names, row, strict=False)), none, none) for row in rows[: plan.top]]
        more = len(rows) > plan.top
        if items:
            items[-1].keys = tuple(rows[len(items) - 1][width:])
        count = None
        if plan.count:
            sql, values = self._plan_statement(
                "apply_count", plan, lambda: self.compiler.apply_count(plan, plan.steps, param=True)
            )
            count = self.conn.execute(sql, values).fetchone()[0]
        return Collection(items, count, more)

    def _expand(self, plan: ReadPlan, parents: list[Entity]) -> None:
        if not parents:
            return
        for ep in plan.expand:
            sub = ep.plan
            shape = self.shape(sub.entity, sub.select)
            steps = (Step(plan.entity, None, 0), Step(sub.entity, ep.relation, None))
            page_sql, page_params = self._compile(self.compiler.page(sub, shape.columns, steps, param=True))
            count_sql = count_params = None
            if sub.count and not sub.single:
                count_sql, count_params = self._compile(
                    self.compiler.counted(sub, steps, param=True)
                    if self.compiler.countable(sub, steps)
                    else self.compiler.count(sub, steps, param=True)
                )
            children: list[Entity] = []
            page_for = _parent_binder(page_params)
            decode = shape.decode
            execute = self.conn.execute
            together = None
            if self.dialect.lateral_expand and len(parents) > 1:
                together = self._lateral_rows(self.compiler.page(sub, shape.columns, steps, param=True), parents)
            for parent in parents:
                if together is not None:
                    rows = together.get(parent.id, ())
                else:
                    rows = execute(page_sql, page_for(parent.id)).fetchall()
                items = [decode(r) for r in rows]
                if sub.single:
                    parent.expanded[ep.relation.name] = items[0] if items else None
                    children.extend(items[:1])
                    continue
                more = len(items) > sub.top
                del items[sub.top :]
                count = None
                if count_sql is not None and count_params is not None:
                    count = execute(count_sql, count_params({PARENT_ID: parent.id})).fetchone()[0]
                parent.expanded[ep.relation.name] = Collection(items, count, more)
                children.extend(items)
            self._expand(sub, children)

    def _lateral_rows(self, page: Select[Any], parents: list[Entity]) -> dict[int, list[Any]]:
        """The rows of ``page`` for every parent in one statement, by parent id, each parent's in page order.

        ``page`` is the statement for one parent (its id a bind parameter); here that parameter
        becomes the column of ``unnest(:parent_ids)``, and the page a LATERAL subquery run per id.
        A LATERAL subquery is run as a nested loop, which returns each parent's rows in its order.
        """
        unnest = func.unnest(bindparam("parent_ids", type_=ARRAY(BigInteger)))
        ids = unnest.table_valued("pid").render_derived().alias("p")

        # A column named in text, not ids.c.pid: a subquery that used the column would take ``p``
        # into its own FROM list (SQLAlchemy does not correlate across the LATERAL boundary), and
        # then see every parent instead of the one of its row.
        pid = literal_column("p.pid", BigInteger)

        def to_column(element: Any) -> Any:
            if isinstance(element, BindParameter) and element.key == PARENT_ID:
                return pid
            return None

        inner = visitors.replacement_traverse(page, {}, to_column)  # type: ignore[call-overload]
        assert isinstance(inner, Select)
        lateral = inner.subquery().lateral("s")
        sql, params = self._compile(select(ids.c.pid, lateral).select_from(ids.join(lateral, true())))
        out: dict[int, list[Any]] = {}
        for row in self.conn.execute(sql, params({"parent_ids": [p.id for p in parents]})).fetchall():
            out.setdefault(row[0], []).append(row[1:])
        return out

    # -- writing ---------------------------------------------------------------------

    def table(self, entity: EntityType) -> Table:
        return self.metadata.tables[entity.table]

    def insert(self, entity: EntityType, props: dict[str, Any], fks: dict[str, int | None]) -> int:
        self._written(entity.table)
        values = codec.encode(entity, props)
        values.update(fks)
        shape = self.shape(entity, None)
        # The new row as stored, for the read of it that answers the request (one statement less per create).
        if self.pipelined:  # with an id taken ahead, among the rows of a multi-row insert; read when asked for
            new_id = values["id"] = self.conn.next_id(entity.table, self.units)
            rows_sql, make = self._rows_sql(entity.table, tuple(values), shape)
            self.inserted[(entity.table, new_id)] = _Returned(
                shape, self.conn.add_row(rows_sql, make, tuple(values.values())), new_id
            )
        else:
            sql, params = self._insert_sql(entity.table, tuple(values), shape)
            row = self.conn.execute(sql, params(values)).fetchone()
            new_id = row[0]
            self.inserted[(entity.table, new_id)] = shape.decode(row)
        if self.counting and entity.table == "observations":
            self.defer(COUNTS, [(c, values[c], 1) for c in PARENT_COLUMNS if values.get(c) is not None])
            if self.summing:
                summary = tuple(values.get(c) for c in _SUMMED)
                self.defer(HOURS, hours.added([summary], 0, 1, 2, 3, 4))
        return int(new_id)

    def insert_many(
        self, entity: EntityType, names: tuple[str, ...], fk_columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert rows of property values (in ``names`` order) followed by foreign keys, on the bulk path.

        Returns the new ids in order.
        """
        self._written(entity.table)
        columns, values = codec.encode_rows(entity, names, rows)
        ids = self.dialect.bulk_insert(self.conn, self.metadata.tables[entity.table], columns + fk_columns, values)
        if self.counting and entity.table == "observations":
            at = {c: len(names) + fk_columns.index(c) for c in PARENT_COLUMNS if c in fk_columns}
            self.defer(COUNTS, row_deltas(rows, at))
            if self.summing and rows and "datastream_id" in fk_columns:
                every = columns + fk_columns  # columns NULL in every row are left out
                place = {c: every.index(c) if c in every else None for c in _SUMMED}
                number_at = place["result_number"]
                type_at = place["result_type"] if number_at is not None else None
                ds_at, start_at = place["datastream_id"], place["phenomenon_time_start"]
                assert ds_at is not None and start_at is not None
                self.defer(
                    HOURS,
                    hours.added(values, ds_at, start_at, place["phenomenon_time_end"], type_at, number_at or 0),
                )
        return ids

    def _rows_sql(
        self, table_name: str, columns: tuple[str, ...], shape: EntityShape
    ) -> tuple[str, Callable[[list[list[Any]]], Any]]:
        """INSERT … SELECT FROM unnest(one array per column) RETURNING the rows (``shape``'s columns, id first),
        and what makes its parameters from the lists of values, column by column: the multi-row insert of a
        pipelined writer (``PipelinedConnection.add_row``). Compiled once per table and column set."""
        key = ("insert_rows", table_name, columns)
        found: Any = self.statements.get(key)
        if found is None:
            table = self.metadata.tables[table_name]
            types = [_array_element(table.c[c].type) for c in columns]
            arrays = [cast(bindparam(c, type_=ARRAY(t)), ARRAY(t)) for c, t in zip(columns, types, strict=True)]
            given = func.unnest(*arrays).table_valued(*columns).render_derived().alias("given")
            returned = [table.c[c] for c in shape.columns]
            stmt = insert(table).from_select(list(columns), select(*given.c)).returning(*returned)
            sql, params = compile_statement(stmt, self.dialect.sa_dialect)

            def make(lists: list[list[Any]]) -> Any:
                return params(dict(zip(columns, lists, strict=True)))

            found = self.statements[key] = (sql, make)  # type: ignore[assignment]
        return found  # type: ignore[no-any-return]

    def _insert_sql(self, table_name: str, columns: tuple[str, ...], shape: EntityShape) -> Compiled:
        """INSERT … RETURNING the row (``shape``'s columns, id first), compiled once per table and column set
        (the hot path of ingestion)."""
        key = ("insert", table_name, columns)
        found = self.statements.get(key)
        if found is None:
            table = self.metadata.tables[table_name]
            returned = [table.c[c] for c in shape.columns]
            stmt = insert(table).values({c: bindparam(c) for c in columns}).returning(*returned)
            found = self.statements[key] = compile_statement(stmt, self.dialect.sa_dialect)
        return found

    def prepared(self, key: tuple[Any, ...], build: Callable[[], ClauseElement]) -> Compiled:
        """A statement built and compiled once per ``key``; its values are bind parameters.

        The write path runs the same few lookups for every unit; building and
        compiling them once keeps a single-row write at a few SQLite calls.
        """
        found = self.statements.get(key)
        if found is None:
            found = self.statements[key] = compile_statement(build(), self.dialect.sa_dialect)
        return found

    def run(self, key: tuple[Any, ...], build: Callable[[], ClauseElement], **values: Any) -> Any:
        sql, params = self.prepared(key, build)
        return self.conn.execute(sql, params(values))

    def run_many(self, key: tuple[Any, ...], build: Callable[[], ClauseElement], rows: Sequence[dict[str, Any]]) -> int:
        """``run`` once per row of values, in one ``executemany``; returns the number of rows the statements changed.
        For an embedded database, where a statement costs no round trip (a server's dialect takes arrays instead,
        ``array_rows``)."""
        if not rows:
            return 0
        sql, params = self.prepared(key, build)
        cur = self.conn.cursor()
        try:
            cur.executemany(sql, [params(values) for values in rows])
            return int(cur.rowcount)
        finally:
            cur.close()

    def update(self, entity: EntityType, id: int, props: dict[str, Any], fks: dict[str, int | None]) -> None:
        self._written(entity.table)
        self.inserted.pop((entity.table, id), None)
        values = codec.encode(entity, props)
        values.update(fks)
        if values:
            table = self.table(entity)
            counted = self.counting and entity.table == "observations" and any(c in values for c in _CHANGED)
            before = self._observation_keys(id) if counted else None

            def build() -> ClauseElement:
                return update(table).where(table.c.id == bindparam("pk")).values({c: bindparam(c) for c in values})

            self.send(("update", entity.table, tuple(values)), build, pk=id, **values)
            if before is not None:
                self._moved(before, tuple(values.get(c, old) for c, old in zip(_KEYS, before, strict=True)))

    def _observation_keys(self, observation_id: int) -> tuple[Any, ...] | None:
        """An Observation's Datastream, MultiDatastream and phenomenonTime start; None when there is none."""
        table = self.metadata.tables["observations"]

        def build() -> ClauseElement:
            return select(*(table.c[c] for c in _KEYS)).where(table.c.id == bindparam("pk"))

        row = self.run(("observation_keys",), build, pk=observation_id).fetchone()
        return None if row is None else tuple(row)

    def _moved(self, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
        """An Observation changed: the counts of its parents before and after, the summaries of both its hours."""
        parents = {c: i for i, c in enumerate(PARENT_COLUMNS)}
        if before[:2] != after[:2]:
            self.defer(COUNTS, row_deltas([before], parents, -1) + row_deltas([after], parents))
        if self.summing:
            for ds, _, start in (before, after):
                for mark in hours.marked(ds, start):
                    self.defer(HOURS, mark)

    def delete(self, entity: EntityType, id: int) -> bool:
        self._written(entity.table)
        self.inserted.clear()  # its cascades may delete other new rows
        table = self.table(entity)
        if self.counting and entity.table == "observations":
            # The deleted row's parents and time, in the same statement.
            cur = self.run(
                ("delete_counted", entity.table),
                lambda: delete(table).where(table.c.id == bindparam("pk")).returning(*(table.c[c] for c in _KEYS)),
                pk=id,
            )
            gone = cur.fetchall()
            self.defer(COUNTS, row_deltas(gone, {c: i for i, c in enumerate(PARENT_COLUMNS)}, -1))
            if self.summing:
                for ds, _, start in gone:
                    for mark in hours.marked(ds, start):
                        self.defer(HOURS, mark)
            return bool(gone)
        if self.counting and entity.table == "features_of_interest":
            # Its Observations go by ON DELETE CASCADE, past this code: what they count for, first.
            self._cascading(id)
        cur = self.run(("delete", entity.table), lambda: delete(table).where(table.c.id == bindparam("pk")), pk=id)
        return self.rowcount(cur) > 0

    def _cascading(self, feature_id: int) -> None:
        """Note what deleting FeatureOfInterest ``feature_id`` changes: its Observations' counts per parent, and
        the range of hours of each Datastream among them."""
        obs = self.metadata.tables["observations"]

        def build() -> ClauseElement:
            parents = [obs.c[c] for c in PARENT_COLUMNS]
            start = obs.c.phenomenon_time_start
            return (
                select(*parents, func.count(), func.min(start), func.max(start))
                .where(obs.c.feature_of_interest_id == bindparam("pk"))
                .group_by(*parents)
            )

        deltas: list[tuple[str, int, int]] = []
        for ds, mds, n, first, last in self.run(("cascading",), build, pk=feature_id).fetchall():
            deltas += [(c, p, -n) for c, p in zip(PARENT_COLUMNS, (ds, mds), strict=True) if p is not None]
            if self.summing and ds is not None:
                self.defer(HOURS, (ds, hours.hour_of(first), hours.hour_of(last)))
        self.defer(COUNTS, deltas)

    def _row(self, entity: EntityType, id: int) -> Any:
        """The row of ``entity`` ``id`` as ``get`` reads it, or None. A row of any table but Observations is
        remembered in ``memo``: the units of a batch that check a Datastream's existence, derive its
        FeatureOfInterest and widen its extent read it once."""
        remember = entity.table != "observations"
        key = ("row", entity.table, id)
        if remember and key in self.memo:
            return self.memo[key]
        shape = self.shape(entity, None)
        table = self.table(entity)

        def build() -> ClauseElement:
            return select(*(table.c[c] for c in shape.columns)).where(table.c.id == bindparam("pk"))

        row = self.run(("get", entity.name), build, pk=id).fetchone()
        if remember:
            self.memo[key] = row
        return row

    def exists(self, entity: EntityType, id: int) -> bool:
        return (entity.table, id) in self.inserted or self._row(entity, id) is not None

    def get(self, entity: EntityType, id: int) -> Entity | None:
        inserted = self.inserted.pop((entity.table, id), None)
        if inserted is not None:  # once: the caller may change the Entity it gets
            return inserted if isinstance(inserted, Entity) else inserted.entity()
        row = self._row(entity, id)
        return self.shape(entity, None).decode(row) if row is not None else None

    def _related(self, entity: EntityType, rel: Relation, count: bool) -> ClauseElement:
        target = self.registry.target(rel)
        table = self.table(target)
        where = self.compiler.scope((Step(entity, None, 0), Step(target, rel, None)), table, param=True)
        if count:
            return select(func.count()).select_from(table).where(where)
        return select(table.c.id).where(where).order_by(table.c.id)

    def related_ids(self, entity: EntityType, id: int, rel: Relation) -> list[int]:
        key = ("related", entity.name, rel.name)
        cur = self.run(key, lambda: self._related(entity, rel, False), **{PARENT_ID: id})
        return [r[0] for r in cur.fetchall()]

    def count_related(self, entity: EntityType, id: int, rel: Relation) -> int:
        key = ("count_related", entity.name, rel.name)
        return int(self.run(key, lambda: self._related(entity, rel, True), **{PARENT_ID: id}).fetchone()[0])

    def link(self, link: LinkTable, source: int, target: int) -> None:
        self._written(link.table)
        table = self.metadata.tables[link.table]

        def build() -> Any:
            return (
                self.dialect.conflict_insert(table)
                .values({link.source_column: bindparam("source"), link.target_column: bindparam("target")})
                .on_conflict_do_nothing()
            )

        self.run(("link", link.table), build, source=source, target=target)

    def unlink(self, link: LinkTable, source: int, target: int | None = None) -> int:
        self._written(link.table)
        table = self.metadata.tables[link.table]

        def build() -> ClauseElement:
            stmt = delete(table).where(table.c[link.source_column] == bindparam("source"))
            if target is not None:
                stmt = stmt.where(table.c[link.target_column] == bindparam("target"))
            return stmt

        values = {"source": source} if target is None else {"source": source, "target": target}
        return self.rowcount(self.run(("unlink", link.table, target is None), build, **values))

    def location_feature(self, thing_id: int) -> tuple[int, int | None] | None:
        """The Thing's first Location (lowest id) and the FeatureOfInterest generated from it, if that still
        exists; None when the Thing has no Location. One statement."""
        link = self.registry.storage(THING.relation("Locations"))  # type: ignore[arg-type]
        assert isinstance(link, LinkTable)
        links = self.metadata.tables[link.table]
        locations = self.metadata.tables["locations"]
        features = self.metadata.tables["features_of_interest"]

        def build() -> ClauseElement:
            first = (
                select(func.min(links.c[link.target_column]))
                .where(links.c[link.source_column] == bindparam("thing"))
                .scalar_subquery()
            )
            joined = locations.outerjoin(features, features.c.id == locations.c.generated_foi_id)
            return select(locations.c.id, features.c.id).select_from(joined).where(locations.c.id == first)

        row = self.run(("location_feature",), build, thing=thing_id).fetchone()
        return None if row is None else (row[0], row[1])

    def set_generated_foi(self, location_id: int, foi_id: int | None) -> None:
        self._written("locations")
        table = self.metadata.tables["locations"]

        def build() -> ClauseElement:
            return update(table).where(table.c.id == bindparam("pk")).values(generated_foi_id=bindparam("foi"))

        self.run(("set_generated_foi",), build, pk=location_id, foi=foi_id)

    def observation_extent(self, column: str, datastream_id: int) -> tuple[Any, Any, Any, Any, list[int]]:
        """(min phenomenon start, max phenomenon end, min and max resultTime, FeatureOfInterest ids)."""
        obs = self.metadata.tables["observations"]
        end = func.coalesce(obs.c.phenomenon_time_end, obs.c.phenomenon_time_start)
        row = self.fetch(
            select(
                func.min(obs.c.phenomenon_time_start),
                func.max(end),
                func.min(obs.c.result_time),
                func.max(obs.c.result_time),
            ).where(obs.c[column] == datastream_id)
        )[0]
        fois = self.fetch(select(obs.c.feature_of_interest_id).where(obs.c[column] == datastream_id).distinct())
        return row[0], row[1], row[2], row[3], [r[0] for r in fois]

    def feature_parents(self, feature_id: int) -> list[tuple[str, int]]:
        """(parent column, parent id) of every Datastream and MultiDatastream with Observations of the
        FeatureOfInterest ``feature_id``."""
        obs = self.metadata.tables["observations"]

        def build() -> ClauseElement:
            parents = [obs.c[c] for c in PARENT_COLUMNS]
            return select(*parents).where(obs.c.feature_of_interest_id == bindparam("pk")).distinct()

        rows = self.run(("feature_parents",), build, pk=feature_id).fetchall()
        return [(c, p) for row in rows for c, p in zip(PARENT_COLUMNS, row, strict=True) if p is not None]

    # -- ingestion bookkeeping ---------------------------------------------------------

    def claim(self, source: str, key: str, received: int) -> bool:
        table = self.metadata.tables["ingest_keys"]

        def build() -> Any:
            return (
                self.dialect.conflict_insert(table)
                .values(source=bindparam("source"), key=bindparam("msg_key"), received=bindparam("received"))
                .on_conflict_do_nothing()
            )

        cur = self.run(("claim",), build, source=source, msg_key=key, received=received)
        return self.rowcount(cur) == 1

    def add_dead_letter(
        self, source: str, path: str, reason: str, payload: bytes, received: int, topic: str | None = None
    ) -> int:
        table = self.metadata.tables["dead_letters"]

        def build() -> Any:
            names = ("source", "path", "reason", "payload", "received", "topic")
            return insert(table).values({n: bindparam(n) for n in names}).returning(table.c.id)

        cur = self.run(
            ("dead_letter",),
            build,
            source=source,
            path=path,
            reason=reason,
            payload=payload,
            received=received,
            topic=topic,
        )
        return int(cur.fetchone()[0])

    def dead_letters(self, source: str | None, after: int, limit: int) -> list[DeadLetter]:
        table = self.metadata.tables["dead_letters"]
        stmt = select(
            table.c.id, table.c.source, table.c.path, table.c.received, table.c.reason, table.c.payload, table.c.topic
        )
        stmt = stmt.where(table.c.id > after)
        if source is not None:
            stmt = stmt.where(table.c.source == source)
        rows = self.fetch(stmt.order_by(table.c.id).limit(limit))
        return [DeadLetter(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]

    def remove_dead_letter(self, id: int) -> bool:
        table = self.metadata.tables["dead_letters"]
        return self.execute(delete(table).where(table.c.id == id)) == 1

    def defer(self, key: str, data: Any) -> None:
        self.deferred.append((key, data))
