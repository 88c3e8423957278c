"""Group commit: concurrent writes share one transaction, and a failing one undoes only itself (both stores)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stadsdata.errors import STAError, ValidationError
from stadsdata.model.dataarray import parse_create
from stadsdata.model.entities import OBSERVATION, sensing_registry
from stadsdata.query.options import parse_options
from stadsdata.query.path import ResourcePath, parse_path
from stadsdata.service import Service
from stadsdata.settings import Settings
from stadsdata.store import open_store
from stadsdata.store.threaded import ThreadedStore
from tests import fixtures as f


def _setup(settings: Settings) -> tuple[Service, ThreadedStore]:
    registry = sensing_registry()
    store = open_store(settings.db, registry, synchronous=settings.synchronous)
    return Service(registry, store), store


async def _datastream(service: Service) -> ResourcePath:
    """Create Datastream 1 (its Thing with a Location, for derived FeaturesOfInterest): the path of its
    Observations."""
    registry = service.registry
    body = f.datastream(
        Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
    )
    await service.create(parse_path(registry, "Datastreams"), body)
    return parse_path(registry, "Datastreams(1)/Observations")


async def _count(service: Service, set_path: str) -> int:
    result = await service.read(parse_path(service.registry, set_path), parse_options({"$count": "true", "$top": "0"}))
    return int(result.data.count)  # type: ignore[union-attr,arg-type]


def test_failing_units_undo_only_themselves(settings: Settings) -> None:
    service, store = _setup(settings)
    registry = service.registry

    async def run() -> list[Any]:
        await _datastream(service)
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


def test_batches_are_grouped(settings: Settings) -> None:
    """Many concurrent writes take far fewer commits than writes (measured through the commit hook)."""
    service, store = _setup(settings)
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


def test_a_failing_transaction_block_is_not_replayed(settings: Settings) -> None:
    """An atomic block (as $batch change sets use) next to failing units: its effects appear once or never."""
    service, store = _setup(settings)
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
def test_results_reach_every_caller(settings: Settings, n: int) -> None:
    service, store = _setup(settings)

    async def run() -> list[Any]:
        things = parse_path(service.registry, "Things")
        out = await asyncio.gather(*(service.create(things, f.thing(f"t{i}")) for i in range(n)))
        await store.close()
        return out

    out = asyncio.run(run())
    assert sorted(e.id for e in out) == list(range(1, n + 1))


async def _one_batch(store: ThreadedStore, calls: list[Any]) -> list[Any]:
    """Run the writes ``calls`` as one batch, in this order: the writer is held until all of them are queued."""
    started, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(store.write(hold))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    tasks = [asyncio.ensure_future(c) for c in calls]
    while store._queue.qsize() < len(calls):
        await asyncio.sleep(0.001)
    release.set()
    await held
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_row_the_database_refuses_fails_alone(settings: Settings) -> None:
    """A write that the rules let through but the database refuses (an Observation of a Datastream that is not
    there, inserted directly) fails alone. It comes last in a batch of 40: on PostgreSQL the batch's inserts go out
    without waiting for each other, so its error shows only after the last unit; the batch is then run again to
    find the culprit, and the others are committed."""
    service, store = _setup(settings)

    async def run() -> tuple[list[Any], int, list[int]]:
        observations = await _datastream(service)
        first = await service.create(observations, {"result": 0})
        feature = first.links["FeatureOfInterest"]

        def orphan(tx: Any) -> int:
            props = {"phenomenonTime": (1_000_000, None), "result": -1}
            return int(tx.insert(OBSERVATION, props, {"datastream_id": 999, "feature_of_interest_id": feature}))

        calls = [service.create(observations, {"result": i}) for i in range(1, 40)]
        results = await _one_batch(store, [*calls, store.write(orphan)])
        count = await _count(service, "Datastreams(1)/Observations")
        listed = await service.read(observations, parse_options({"$orderby": "result", "$select": "result"}))
        await store.close()
        return results, count, [e.values["result"] for e in listed.data.items]  # type: ignore[union-attr]

    results, count, stored = asyncio.run(run())
    assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [39]
    assert "foreign key" in str(results[39]).lower(), results[39]
    assert count == 40
    assert stored == list(range(40))


RESULTS: list[Any] = [1, 2.5, True, -7, "seven", None, {"level": 1.25}, [1, 2], False, 10**15, 0.1, ""]


def test_one_batch_of_observations_with_every_kind_of_result(settings: Settings) -> None:
    """Single POSTs of one batch go into the database together (on PostgreSQL as one multi-row insert, whose
    columns are arrays): numbers that are ints and floats, booleans, strings, JSON and null results, with and
    without a resultTime, come back as they were given, in the responses and when read."""
    service, store = _setup(settings)

    async def run() -> tuple[list[Any], list[Any]]:
        observations = await _datastream(service)
        bodies = [
            {"result": r, "phenomenonTime": f"2026-01-01T00:00:{i:02d}Z"}
            | ({"resultTime": "2026-01-02T00:00:00Z"} if i % 2 else {})
            for i, r in enumerate(RESULTS)
        ]
        created = await _one_batch(store, [service.create(observations, b) for b in bodies])
        listed = await service.read(observations, parse_options({"$orderby": "phenomenonTime"}))
        await store.close()
        return created, listed.data.items  # type: ignore[union-attr]

    created, listed = asyncio.run(run())
    assert [e.values["result"] for e in created] == RESULTS
    assert [e.values["result"] for e in listed] == RESULTS
    assert [type(e.values["result"]) for e in listed] == [type(r) for r in RESULTS]
    assert [e.values["resultTime"] is not None for e in listed] == [i % 2 == 1 for i in range(len(RESULTS))]
    assert [e.id for e in listed] == [e.id for e in created]


def test_single_posts_and_a_bulk_request_in_one_batch(settings: Settings) -> None:
    """Single POSTs, a CreateObservations (COPY on PostgreSQL, which cannot join the writer's pipeline) and more
    single POSTs in one batch: every row is stored in order of its time, and the count is exact."""
    service, store = _setup(settings)

    async def run() -> tuple[list[Any], int, list[Any]]:
        observations = await _datastream(service)

        def single(i: int) -> Any:
            return service.create(observations, {"result": i, "phenomenonTime": f"2026-01-01T00:00:{i:02d}Z"})

        bulk = parse_create(
            [
                {
                    "Datastream": {"@iot.id": 1},
                    "components": ["phenomenonTime", "result"],
                    "dataArray": [[f"2026-01-01T00:00:{i:02d}Z", i] for i in range(10, 30)],
                }
            ]
        )
        results = await _one_batch(
            store,
            [*(single(i) for i in range(10)), service.create_observations(bulk), *(single(i) for i in range(30, 40))],
        )
        count = await _count(service, "Datastreams(1)/Observations")
        listed = await service.read(observations, parse_options({"$orderby": "phenomenonTime", "$top": "100"}))
        await store.close()
        return results, count, [e.values["result"] for e in listed.data.items]  # type: ignore[union-attr]

    results, count, stored = asyncio.run(run())
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert count == 40
    assert stored == list(range(40))
