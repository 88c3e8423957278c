"""How many Observations each Datastream and MultiDatastream has, kept exact in the transaction of every write.

The table ``observation_counts`` (``schema.py``) holds one row per parent. The store notes each change of a
parent's count where it writes Observations (``SqlSession``): an insert or bulk insert adds, a deleted
Observation subtracts, an update that moves an Observation to another parent does both, and deleting a
FeatureOfInterest subtracts what its deletion removes by ``ON DELETE CASCADE`` (counted just before). A
Datastream's or MultiDatastream's own row goes with it by the same cascade. The changes are added up once per
parent per batch (deferred work, ``COUNTS``), so that a batch of single-Observation POSTs updates each row once;
since they are part of the units' deferred work, a unit or ``$batch`` change set that is rolled back takes its
changes with it.

A parent that has no row yet (created since, or never written) gets one counted from its Observations at that
moment, which already include the batch's own writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ARRAY, BigInteger, ClauseElement, bindparam, func, insert, select, update
from sqlalchemy import cast as cast_

if TYPE_CHECKING:
    from stadsdata.store.base import Tx
    from stadsdata.store.sql import SqlSession

COUNTS = "observation-counts"
"""The deferred-work key of count changes: each item a list of (parent column, parent id, change)."""

PARENT_COLUMNS = ("datastream_id", "multi_datastream_id")
PARENT_TABLES = {"datastream_id": "datastreams", "multi_datastream_id": "multi_datastreams"}

Delta = tuple[str, int, int]


def row_deltas(rows: Iterable[Sequence[Any]], positions: dict[str, int], sign: int = 1) -> list[Delta]:
    """The count changes for ``rows`` of Observations whose parent ids are at ``positions`` (by column)."""
    out: list[Delta] = []
    for column, at in positions.items():
        for parent, n in Counter(r[at] for r in rows).items():
            if parent is not None:
                out.append((column, parent, sign * n))
    return out


def apply_counts(session: Tx, items: list[list[Delta]]) -> None:
    """Add up a batch's count changes per parent and write each parent's row once.

    A parent without a row yet (its first Observations) gets one counted from its Observations. On a server that is
    one statement per parent column for all parents, sent without waiting for it (``_upsert``); on an embedded
    database one UPDATE per parent, and a count for a parent whose row was missing.
    """
    tx = cast("SqlSession", session)
    totals: dict[str, dict[int, int]] = {}
    for deltas in items:
        for column, parent, delta in deltas:
            per = totals.setdefault(column, {})
            per[parent] = per.get(parent, 0) + delta
    counts = tx.metadata.tables["observation_counts"]
    observations = tx.metadata.tables["observations"]
    for column, per_parent in totals.items():
        changes = [{"parent": parent, "delta": delta} for parent, delta in per_parent.items() if delta]
        if not changes:
            continue
        if tx.dialect.array_rows:  # one statement over arrays, sent without waiting for it
            arrays = {"parent": [c["parent"] for c in changes], "delta": [c["delta"] for c in changes]}
            tx.send(("count_upsert", column), partial(_upsert, tx, column), **arrays)
            continue

        def add(column: str = column) -> ClauseElement:
            return (
                update(counts)
                .where(counts.c[column] == bindparam("parent"))
                .values(count=counts.c["count"] + bindparam("delta"))
            )

        if tx.run_many(("count_add", column), add, changes) == len(changes):
            continue

        def known(column: str = column) -> ClauseElement:
            return select(counts.c.id).where(counts.c[column] == bindparam("parent"))

        def fill(column: str = column) -> ClauseElement:
            parents = tx.metadata.tables[PARENT_TABLES[column]]
            counted = (
                select(func.count())
                .select_from(observations)
                .where(observations.c[column] == parents.c.id)
                .scalar_subquery()
            )
            # Only for a parent that still exists (it may have been deleted later in the batch).
            rows = select(parents.c.id, counted).where(parents.c.id == bindparam("parent"))
            return insert(counts).from_select([column, "count"], rows)

        for change in changes:
            if tx.run(("count_known", column), known, parent=change["parent"]).fetchone() is None:
                tx.run(("count_fill", column), fill, parent=change["parent"])


def _upsert(tx: SqlSession, column: str) -> ClauseElement:
    """Add ``:delta[i]`` to the count of parent ``:parent[i]``, and count the Observations of a parent that has no
    row yet, in one statement: WITH changed AS (UPDATE … FROM unnest(…) RETURNING) INSERT … the parents not in
    ``changed`` (both parts see the batch's writes before it)."""
    counts = tx.metadata.tables["observation_counts"]
    observations = tx.metadata.tables["observations"]
    parents = tx.metadata.tables[PARENT_TABLES[column]]
    arrays = (cast_(bindparam(name, type_=ARRAY(BigInteger)), ARRAY(BigInteger)) for name in ("parent", "delta"))
    given = func.unnest(*arrays).table_valued("parent", "delta").render_derived().alias("given")
    changed = (
        update(counts)
        .where(counts.c[column] == given.c.parent)
        .values(count=counts.c["count"] + given.c.delta)
        .returning(counts.c[column])
        .cte("changed")
    )
    counted = select(func.count()).select_from(observations).where(observations.c[column] == parents.c.id)
    # Only for a parent that still exists (it may have been deleted later in the batch).
    missing = (
        select(parents.c.id, counted.scalar_subquery())
        .join_from(given, parents, parents.c.id == given.c.parent)
        .where(given.c.parent.not_in(select(changed.c[column])))
    )
    return insert(counts).from_select([column, "count"], missing).add_cte(changed)
