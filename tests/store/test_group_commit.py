"""Group commit: concurrent writes share one transaction, and a failing one undoes only itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stadsdata.errors import STAError, ValidationError
from stadsdata.model.entities import sensing_registry
from stadsdata.query.options import parse_options
from stadsdata.query.path import parse_path
from stadsdata.service import Service
from stadsdata.store.sqlite import SQLiteStore
from tests import fixtures as f


def _setup(tmp_path: Path) -> tuple[Service, SQLiteStore]:
    registry = sensing_registry()
    store = SQLiteStore(tmp_path / "gc.db", registry, synchronous="NORMAL")
    return Service(registry, store), store


async def _count(service: Service, set_path: str) -> int:
    result = await service.read(parse_path(service.registry, set_path), parse_options({"$count": "true", "$top": "0"}))
    return int(result.data.count)  # type: ignore[union-attr,arg-type]


def test_failing_units_undo_only_themselves(tmp_path: Path) -> None:
    service, store = _setup(tmp_path)
    registry = service.registry

    async def run() -> list[Any]:
        body = f.datastream(
            Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
        )
        await service.create(parse_path(registry, "Datastreams"), body)
        things = parse_path(registry, "Things")
        observations = parse_path(registry, "Observations")
        calls = []
        for i in range(60):
            if i % 3 == 0:
                # Fails after its Thing row was inserted: the link to Datastream 99 does not exist.
                calls.append(service.create(things, f.thing(f"bad {i}", Datastreams=[{"@iot.id": 99}])))
            elif i % 3 == 1:
                calls.append(service.create(things, f.thing(f"good {i}")))
            else:
                calls.append(service.create(observations, {"result": i, "Datastream": {"@iot.id": 1}}))
        results = await asyncio.gather(*calls, return_exceptions=True)
        counts = [await _count(service, "Things"), await _count(service, "Observations")]
        await store.close()
        return [results, counts]

    results, (things, observations) = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 20
    assert all(isinstance(e, ValidationError) and "99" in str(e) for e in errors)
    assert things == 1 + 20  # the setup's Thing and the good ones; no trace of the bad ones
    assert observations == 20
    created = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(r.values["name"] for r in created if "name" in r.values) == sorted(
        f"good {i}" for i in range(60) if i % 3 == 1
    )


def test_batches_are_grouped(tmp_path: Path) -> None:
    """Many concurrent writes take far fewer commits than writes (measured through the commit hook)."""
    service, store = _setup(tmp_path)
    commits = 0
    original = store._attempt

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal commits
        commits += 1
        return original(*args, **kwargs)

    store._attempt = counting  # type: ignore[method-assign]

    async def run() -> None:
        things = parse_path(service.registry, "Things")
        await asyncio.gather(*(service.create(things, f.thing(f"t{i}")) for i in range(200)))
        await store.close()

    asyncio.run(run())
    assert commits < 100


def test_a_failing_transaction_block_is_not_replayed(tmp_path: Path) -> None:
    """An atomic block (as $batch change sets use) next to failing units: its effects appear once or never."""
    service, store = _setup(tmp_path)
    registry = service.registry
    things = parse_path(registry, "Things")

    async def run() -> tuple[int, list[Any]]:
        async def atomic() -> None:
            async with store.transaction():
                await service.create(things, f.thing("in block 1"))
                await service.create(things, f.thing("in block 2"))

        results = await asyncio.gather(
            atomic(),
            *(service.create(things, f.thing("bad", Datastreams=[{"@iot.id": 7}])) for _ in range(5)),
            *(service.create(things, f.thing(f"ok {i}")) for i in range(5)),
            return_exceptions=True,
        )
        n = await _count(service, "Things")
        await store.close()
        return n, results

    n, results = asyncio.run(run())
    assert results[0] is None
    assert all(isinstance(r, STAError) for r in results[1:6])
    assert n == 7


@pytest.mark.parametrize("n", [1, 7])
def test_results_reach_every_caller(tmp_path: Path, n: int) -> None:
    service, store = _setup(tmp_path)

    async def run() -> list[Any]:
        things = parse_path(service.registry, "Things")
        out = await asyncio.gather(*(service.create(things, f.thing(f"t{i}")) for i in range(n)))
        await store.close()
        return out

    out = asyncio.run(run())
    assert sorted(e.id for e in out) == list(range(1, n + 1))
