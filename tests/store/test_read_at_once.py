"""Small reads on SQLite run on the event loop's thread, within a time budget; a slow one moves to a reader."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from stadsdata.model.entities import sensing_registry
from stadsdata.query.options import parse_options
from stadsdata.query.path import parse_path
from stadsdata.service import Service
from stadsdata.store.sql import SqlSession
from stadsdata.store.sqlite import SQLiteStore
from tests import fixtures as f

# About a million steps of SQLite's virtual machine: far more than the budget of a few milliseconds.
SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT count(*) FROM c"


def _where(sql: str) -> tuple[str, ...]:
    """A read that answers its result and the thread it ran on."""

    def read(session: SqlSession) -> tuple[str, ...]:
        return (session.conn.execute(sql).fetchone()[0], threading.current_thread().name)

    return read  # type: ignore[return-value]


def test_a_small_read_runs_at_once_and_a_slow_one_moves_to_a_reader(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", sensing_registry())

    async def run() -> list[tuple[str, ...]]:
        try:
            return [
                await store.run_read(_where("SELECT 1"), small=True),
                await store.run_read(_where(SLOW), small=True),
                await store.run_read(_where("SELECT 2"), small=True),  # the loop's connection is fine after that
                await store.run_read(_where("SELECT 3")),
            ]
        finally:
            await store.close()

    main = threading.current_thread().name
    quick, slow, after, not_small = asyncio.run(run())
    assert quick == (1, main)
    assert slow[0] == 300000 and slow[1].startswith("stadsdata-read")
    assert after == (2, main)
    assert not_small[0] == 3 and not_small[1].startswith("stadsdata-read")


def test_reads_that_move_answer_what_reads_at_once_answer(tmp_path: Path) -> None:
    """With no time at all, a read of more than a few hundred steps starts at once, is interrupted and runs
    again on a reader thread: the answers are the same."""
    registry = sensing_registry()
    store = SQLiteStore(tmp_path / "s.db", registry)
    service = Service(registry, store)
    paths = ["Datastreams(1)/Observations", "Observations", "Datastreams(1)", "Things(1)/Locations"]
    options = parse_options({"$top": "50", "$orderby": "phenomenonTime desc"})

    async def read_all() -> list[object]:
        out = []
        for p in paths:
            result = await service.read(parse_path(registry, p), options if "Observations" in p else parse_options({}))
            out.append(result.data)
        return out

    threads: list[str] = []

    async def run() -> tuple[list[object], list[object]]:
        body = f.datastream(
            Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
        )
        await service.create(parse_path(registry, "Datastreams"), body)
        for i in range(120):
            await service.create(
                parse_path(registry, "Datastreams(1)/Observations"),
                {"phenomenonTime": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "result": i},
            )
        try:
            at_once = await read_all()
            store.at_once_budget = 0.0
            inner = store._in_read_tx

            def recorded(*args: Any) -> Any:
                threads.append(threading.current_thread().name)
                return inner(*args)

            store._in_read_tx = recorded  # type: ignore[method-assign]
            moved = await read_all()
            return at_once, moved
        finally:
            await store.close()

    at_once, moved = asyncio.run(run())
    assert repr(at_once) == repr(moved)
    assert any(t.startswith("stadsdata-read") for t in threads), "no read was interrupted and handed to a reader"
    assert len(at_once[0].items) == 50  # type: ignore[attr-defined]
