"""The PostgreSQL writer's connection: statements whose outcome is not needed at once go out together.

Each statement on a server costs a round trip. The writer of a group commit runs
hundreds of statements per batch whose results nobody waits for: the inserts of
single Observations (their ids are taken from the sequence beforehand), updates,
hourly summaries, the COMMIT. ``send`` queues such a statement in libpq's
pipeline mode (through psycopg's ``Connection.pipeline``); the server starts on
it at once, and the client waits only at the next ``flush``. Until then a
statement whose rows are needed (``execute`` and a fetch) joins the queue, and
the fetch waits for the statements up to it, in one round trip: BEGIN, the
inserts and updates of some units and the lookup of the next go together.
Statements run in the order they were given. What is done is known only after
a fetch or a ``flush``: a caller that needs a statement's row count, or its
COMMIT confirmed, flushes first.

An insert that is sent needs its id before the row exists, so the writer takes
ids from the table's sequence ahead, as many at a time as its batch has units
or at least ``AHEAD`` (``next_id``). Ids taken and not used are skipped, as a
sequence always skips the ids of rolled-back inserts: a restart leaves a gap of
fewer than ``AHEAD`` ids in a table the server wrote to.

Inserts into the same table with the same columns, one after another (the
single-Observation POSTs of a batch), are not even sent one by one: ``add_row``
keeps them, and they go out as one multi-row statement (over one array per
column) before any other statement is sent or run.

A failing sent statement is reported by ``flush`` (or by the ``execute`` that
flushed): the caller then treats its transaction as failed, as it would have
after the statement itself. The writer calls ``flush`` at the end of each unit
it must tell apart from the others (``threaded``), so an error is still
charged to the unit that caused it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

AHEAD = 64
"""The fewest ids the writer takes from a table's sequence at a time: one statement per 64 rows at most."""


def take_ids(conn: Any, table: str, n: int) -> list[int]:
    """``n`` new ids from the sequence of ``table``'s id column, in increasing order (one statement)."""
    rows: Sequence[tuple[int]] = conn.execute(
        "SELECT nextval(s) FROM (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS s) AS q, generate_series(1, %s)",
        (table, n),
    ).fetchall()
    return [r[0] for r in rows]


class Rows:
    """Rows of one multi-row INSERT … RETURNING (``PipelinedConnection.add_row``); ``row(id)`` gives one back."""

    __slots__ = ("by_id", "conn", "cursor", "params", "rows", "sql")

    def __init__(self, conn: PipelinedConnection, sql: str, params: Callable[[list[list[Any]]], Any]) -> None:
        self.conn = conn
        self.sql = sql
        self.params = params
        self.rows: list[tuple[Any, ...]] = []
        self.cursor: Any = None
        self.by_id: dict[Any, tuple[Any, ...]] | None = None

    def row(self, id: int) -> tuple[Any, ...]:
        """The returned row whose first column is ``id`` (sends the rows first if they still wait)."""
        if self.cursor is None:
            self.conn.send_rows()
        if self.by_id is None:
            self.by_id = {r[0]: r for r in self.cursor.fetchall()}
        return self.by_id[id]


class PipelinedConnection:
    """A psycopg connection with ``send``, ``flush`` and ``discard``; everything else is the connection's."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn
        self._pipeline: Any = None
        self._rows: Rows | None = None
        self._ids: dict[str, list[int]] = {}  # ids taken ahead, by table, the next one last

    def next_id(self, table: str, ahead: int) -> int:
        """A new id for a row of ``table``; when none is left, ``ahead`` more (at least ``AHEAD``) are taken from
        its sequence."""
        ids = self._ids.get(table)
        if not ids:
            ids = self._ids[table] = take_ids(self, table, max(ahead, AHEAD))[::-1]
        return ids.pop()

    def add_row(self, sql: str, params: Callable[[list[list[Any]]], Any], row: tuple[Any, ...]) -> Rows:
        """Keep ``row`` for the multi-row statement ``sql``, whose parameters ``params`` makes from one list of
        values per column; rows for the same statement given one after another go out together."""
        rows = self._rows
        if rows is None or rows.sql != sql:
            self.send_rows()
            rows = self._rows = Rows(self, sql, params)
        rows.rows.append(row)
        return rows

    def send_rows(self) -> None:
        """Send the rows ``add_row`` keeps, as one statement."""
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.cursor = self.send(rows.sql, rows.params([list(column) for column in zip(*rows.rows, strict=True)]))

    def send(self, sql: str, params: Any = None) -> Any:
        """Run ``sql`` without waiting for it; its cursor's rows can be fetched later (that waits)."""
        self.send_rows()
        if self._pipeline is None:
            self._pipeline = self.raw.pipeline()
            self._pipeline.__enter__()
        return self.raw.execute(sql, params)

    def flush(self) -> None:
        """Wait for everything sent; raise the error of the first sent statement that failed."""
        self.send_rows()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(None, None, None)

    def discard(self) -> None:
        """Leave pipeline mode after a failure, ignoring what the sent statements did (the caller rolls back)."""
        self._rows = None
        with contextlib.suppress(Exception):
            self.flush()

    def execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        """Run ``sql``; while statements are being sent it joins them, and fetching its rows waits for it alone."""
        self.send_rows()
        return self.raw.execute(sql, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        """A cursor outside pipeline mode (COPY and ``executemany`` need one): waits for what was sent first."""
        self.flush()
        return self.raw.cursor(*args, **kwargs)

    def close(self) -> None:
        self.discard()
        self.raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
