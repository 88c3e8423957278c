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

    The rows are changed by one statement per parent column, sent for all parents together; a parent without a row
    yet (its first Observations) gets one counted from its Observations.
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

        def add(column: str = column, arrays: bool = False) -> ClauseElement:
            if arrays:  # UPDATE … FROM unnest(:parent, :delta)
                unnest = func.unnest(*(cast_(bindparam(name, type_=ARRAY(BigInteger)), ARRAY(BigInteger))
                                       for name in ("parent", "delta")))  # fmt: skip
                given = unnest.table_valued("parent", "delta").render_derived().alias("changed")
                parent, delta = given.c.parent, given.c.delta
            else:
                parent, delta = bindparam("parent"), bindparam("delta")
            return update(counts).where(counts.c[column] == parent).values(count=counts.c["count"] + delta)

        if tx.dialect.array_rows:
            arrays = {"parent": [c["parent"] for c in changes], "delta": [c["delta"] for c in changes]}
            changed = tx.rowcount(tx.run(("count_add", column, True), partial(add, column, True), **arrays))
        else:
            changed = tx.run_many(("count_add", column, False), add, changes)
        if changed == len(changes):
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
