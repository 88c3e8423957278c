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

A failing sent statement is reported by ``flush`` (or by the ``execute`` that
flushed): the caller then treats its transaction as failed, as it would have
after the statement itself. The writer calls ``flush`` at the end of each unit
it must tell apart from the others (``threaded``), so an error is still
charged to the unit that caused it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
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


class PipelinedConnection:
    """A psycopg connection with ``send``, ``flush`` and ``discard``; everything else is the connection's."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn
        self._pipeline: Any = None
        self._ids: dict[str, list[int]] = {}  # ids taken ahead, by table, the next one last

    def next_id(self, table: str, ahead: int) -> int:
        """A new id for a row of ``table``; when none is left, ``ahead`` more (at least ``AHEAD``) are taken from
        its sequence."""
        ids = self._ids.get(table)
        if not ids:
            ids = self._ids[table] = take_ids(self, table, max(ahead, AHEAD))[::-1]
        return ids.pop()

    def send(self, sql: str, params: Any = None) -> Any:
        """Run ``sql`` without waiting for it; its cursor's rows can be fetched later (that waits)."""
        if self._pipeline is None:
            self._pipeline = self.raw.pipeline()
            self._pipeline.__enter__()
        return self.raw.execute(sql, params)

    def flush(self) -> None:
        """Wait for everything sent; raise the error of the first sent statement that failed."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(None, None, None)

    def discard(self) -> None:
        """Leave pipeline mode after a failure, ignoring what the sent statements did (the caller rolls back)."""
        with contextlib.suppress(Exception):
            self.flush()

    def execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        """Run ``sql``; while statements are being sent it joins them, and fetching its rows waits for it alone."""
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
