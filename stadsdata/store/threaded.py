"""The machinery the SQL stores share: one writer thread with group commit, a pool of readers.

Writes are units of work queued to the writer, which runs every unit that is
waiting in one transaction, runs the batch's deferred work (e.g. Datastream
aggregates, once per Datastream per batch), commits, and only then answers
the callers. A unit that fails is undone alone: the batch is then replayed
with a savepoint per unit. Group commit keeps a durable commit per
acknowledged write while sustaining thousands of writes per second.

Reads run on reader threads, each with its own connection, one snapshot per
request. A store subclass supplies the connections and the dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from stadsdata.model.entities import Registry
from stadsdata.query.plan import ReadPlan
from stadsdata.store.base import Collection, DeferredFn, Entity, Finish, Tx
from stadsdata.store.compile import Compiler
from stadsdata.store.schema import build_metadata
from stadsdata.store.sql import Compiled, SqlSession, SqlStoreDialect

log = logging.getLogger(__name__)
T = TypeVar("T")

_STOP = object()


class TooLong(Exception):
    """A read ran out of the time it was given (``ThreadedStore._bounded``)."""


_COMMIT = object()
_ROLLBACK = object()


class _RolledBack(Exception):
    """Ends a transaction() conversation so that its writes are undone."""


class _UnitFailed(Exception):
    """A unit of an optimistic batch failed; the batch is run again with a savepoint per unit."""


class _Unit:
    __slots__ = ("fn", "future", "loop", "replayable")

    def __init__(
        self,
        fn: Callable[[Tx], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        replayable: bool = True,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        self.replayable = replayable


def _resolve_all(items: list[tuple[_Unit, Any, BaseException | None]]) -> None:
    for unit, result, error in items:
        _resolve(unit.future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ThreadedStore:
    """A SQL store: subclasses open connections (``_connect``) and manage the schema (``migrate``)."""

    begin_write = "BEGIN"
    """How the writer starts a transaction."""
    begin_read = "BEGIN"
    """How a reader starts the snapshot of one request."""
    snapshot_always = True
    """Whether a read of one statement gets a transaction of its own too (cheap in-process on SQLite; on
    PostgreSQL a statement outside a transaction is its own snapshot, and BEGIN and COMMIT cost two round trips)."""
    at_once_budget: float | None = None
    """Seconds a small read may take on the event loop's thread (None: every read runs on a reader thread)."""

    def __init__(
        self,
        registry: Registry,
        dialect: SqlStoreDialect,
        *,
        readers: int = 4,
        max_batch: int = 512,
        dialect_name: str = "sqlite",
    ) -> None:
        self.registry = registry
        self.metadata = build_metadata(registry, dialect_name)
        self.dialect = dialect
        self.compiler = Compiler(registry, self.metadata, self.dialect)
        self.max_batch = max_batch
        self._statements: dict[Any, Compiled] = {}
        self._compiled: dict[Any, Any] = {}
        self._plans: dict[Any, Any] = {}
        self._deferred: dict[str, DeferredFn] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._reader_connections: list[Any] = []
        self._reads: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader_threads = [
            threading.Thread(target=self._reader, name=f"stadsdata-read_{i}", daemon=True) for i in range(readers)
        ]
        for thread in self._reader_threads:
            thread.start()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._channel: contextvars.ContextVar[queue.SimpleQueue[Any] | None] = contextvars.ContextVar(
            f"stadsdata-transaction-{id(self)}", default=None
        )
        self.on_timing: Callable[[str, float], None] | None = None
        """Called with ("read" | "write", seconds) after each read transaction and write batch (metrics)."""

    # -- what a store supplies -----------------------------------------------------------

    def _connect(self, *, write: bool) -> Any:
        """A new DBAPI connection in autocommit mode (transactions are begun explicitly)."""
        raise NotImplementedError

    def _in_transaction(self, conn: Any) -> bool:
        raise NotImplementedError

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        raise NotImplementedError

    def schema_revision(self) -> str | None:
        raise NotImplementedError

    def session(self, conn: Any) -> SqlSession:
        return SqlSession(
            conn,
            self.registry,
            self.metadata,
            self.dialect,
            self.compiler,
            self._statements,
            self._compiled,
            self._plans,
        )

    # -- reading ---------------------------------------------------------------------

    def _reader_session(self) -> SqlSession:
        session: SqlSession | None = getattr(self._local, "session", None)
        if session is None:
            conn = self._connect(write=False)
            with self._lock:
                self._reader_connections.append(conn)
            session = self._local.session = self.session(conn)
        return session

    def _reader(self) -> None:
        """A reader thread: runs reads from the queue, each answered on its event loop."""
        while True:
            job = self._reads.get()
            if job is _STOP:
                return
            fn, snapshot, future, loop = job
            result, error = None, None
            try:
                result = self._in_read_tx(fn, snapshot)
            except BaseException as exc:  # handed to the request that asked
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this read any more
                loop.call_soon_threadsafe(_resolve, future, result, error)

    def _in_read_tx(self, fn: Callable[[SqlSession], T], snapshot: bool = True, budget: float | None = None) -> T:
        session = self._reader_session()
        start = time.perf_counter()
        # One snapshot for all statements of the request (page, count, expands).
        begin = snapshot or self.snapshot_always
        session.forget()  # what a previous read remembered may have changed since
        if begin:
            session.conn.execute(self.begin_read)
        try:
            return fn(session) if budget is None else self._bounded(session, fn, budget)
        finally:
            if begin:
                session.conn.execute("COMMIT")
            if self.on_timing is not None:
                self.on_timing("read", time.perf_counter() - start)

    def _bounded(self, session: SqlSession, fn: Callable[[SqlSession], T], budget: float) -> T:
        """``fn``, whose statements raise ``_TooLong`` once they have run for ``budget`` seconds."""
        raise NotImplementedError

    async def ping(self) -> None:
        """Answer a trivial query through a reader connection (readiness)."""
        await self.run_read(lambda s: s.conn.execute("SELECT 1").fetchall())

    def gauges(self) -> dict[str, Callable[[], float]]:
        """Current sizes, for metrics: reader connections open, writes queued."""
        return {
            "reader_connections": lambda: float(len(self._reader_connections)),
            "queued_writes": lambda: float(self._queue.qsize()),
        }

    async def read(self, plan: ReadPlan) -> Entity | Collection | None:
        return await self.run_read(lambda s: s.read(plan))

    def _read_at_once(self, fn: Callable[[SqlSession], T], snapshot: bool) -> tuple[bool, T | None]:
        """Try ``fn`` on the calling thread within ``at_once_budget``: (True, result), or (False, None) when
        the store cannot bound a read's time or this one ran out of it (it then starts again on a reader)."""
        if self.at_once_budget is None:
            return False, None
        try:
            return True, self._in_read_tx(fn, snapshot, self.at_once_budget)
        except TooLong:
            return False, None

    async def run_read(self, fn: Callable[[Any], T], *, snapshot: bool = True, small: bool = False) -> T:
        """Run ``fn`` on a reader thread in a read transaction. ``snapshot=False``: ``fn`` runs one statement
        (or statements that need not see the same moment), so the store may skip the transaction.
        ``small``: ``fn`` handles few rows, so a store that can bound the time of its statements may first try
        it at once, without the two thread switches (a quarter of a millisecond) of a reader thread."""
        if small:
            done, result = self._read_at_once(fn, snapshot)
            if done:
                return result  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._reads.put((fn, snapshot, future, loop))
        return await future

    # -- writing ---------------------------------------------------------------------

    def register_deferred(self, key: str, fn: DeferredFn) -> None:
        """Register the batch-level function that consumes ``Tx.defer(key, …)`` data."""
        self._deferred[key] = fn

    async def write(self, fn: Callable[[Tx], Any], *, replayable: bool = True) -> Any:
        """Run ``fn`` on the writer; return its result once it is committed.

        ``fn`` may run more than once (its batch is replayed when another unit
        of it fails), so it must act only through the transaction; a unit that
        cannot be replayed says ``replayable=False``. Inside ``transaction()``
        the unit joins that transaction instead and its result is returned
        before the commit.
        """
        channel = self._channel.get()
        if channel is not None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[Any] = loop.create_future()
            channel.put(_Unit(fn, fut, loop))
            return await fut
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="stadsdata-write", daemon=True)
            self._writer.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Unit(fn, future, loop, replayable))
        return await future

    @asynccontextmanager
    async def transaction(self, timeout: float = 60.0) -> AsyncIterator[None]:
        """Make every ``write`` inside the block part of one transaction, committed at its end.

        Used for atomic change sets of ``$batch``. The writer is held for the
        duration, so keep the block short; it is rolled back when the block
        raises or when no unit arrives for ``timeout`` seconds.
        """
        if self._channel.get() is not None:
            raise RuntimeError("transactions do not nest")
        ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def conversation(session: Any) -> None:
            loop.call_soon_threadsafe(_resolve, started, None, None)
            while True:
                try:
                    item = ops.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError("the transaction was abandoned") from None
                if item is _COMMIT:
                    return
                if item is _ROLLBACK:
                    raise _RolledBack
                session.conn.execute("SAVEPOINT sub")
                try:
                    result = item.fn(session)
                    self._run_deferred(session, session.deferred)
                    if isinstance(result, Finish):
                        result = result.fn(session)
                    session.flush()
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                    session.discard()
                    session.conn.execute("ROLLBACK TO sub")
                    session.conn.execute("RELEASE sub")
                    session.deferred.clear()
                    session.forget()
                    item.loop.call_soon_threadsafe(_resolve, item.future, None, exc)
                    continue
                session.conn.execute("RELEASE sub")
                item.loop.call_soon_threadsafe(_resolve, item.future, result, None)

        outer = asyncio.ensure_future(self.write(conversation, replayable=False))
        await asyncio.wait([started, outer], return_when=asyncio.FIRST_COMPLETED)
        if outer.done():
            outer.result()  # raises what went wrong
        token = self._channel.set(ops)
        try:
            yield
        except BaseException:
            ops.put(_ROLLBACK)
            with contextlib.suppress(_RolledBack):
                await outer
            raise
        else:
            ops.put(_COMMIT)
            await outer
        finally:
            self._channel.reset(token)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a transaction of its own on a new connection (CLI, tests; not while serving)."""
        conn = self._connect(write=True)
        try:
            session = self.session(conn)
            conn.execute(self.begin_write)
            try:
                result = fn(session)
                self._run_deferred(session, session.deferred)
                if isinstance(result, Finish):
                    result = result.fn(session)
                session.send_text("COMMIT")
                session.flush()
            except BaseException:
                session.discard()
                conn.execute("ROLLBACK")
                raise
            return result
        finally:
            conn.close()

    def _run_deferred(self, session: SqlSession, items: list[tuple[str, Any]]) -> None:
        grouped: dict[str, list[Any]] = {}
        for key, data in items:
            grouped.setdefault(key, []).append(data)
        for key, data_list in grouped.items():
            self._deferred[key](session, data_list)
        items.clear()

    def _write_loop(self) -> None:
        conn = self._connect(write=True)
        session = self.session(conn)
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(conn, session, batch)
            if stop:
                break
        conn.close()

    def _run_batch(self, conn: Any, session: SqlSession, batch: list[_Unit]) -> None:
        """Run ``batch`` in one transaction with one commit (group commit), then answer every caller.

        The units run back to back first; only when one of them fails is the
        transaction rolled back and the batch run again with a savepoint around
        each unit, so that the failing unit alone is undone.
        """
        start = time.perf_counter()
        try:
            try:
                # A transaction() conversation talks to its caller while it runs: never run it twice.
                replayable = all(unit.replayable for unit in batch)
                final = self._attempt(conn, session, batch, isolate=not replayable)
            except _UnitFailed:
                final = self._attempt(conn, session, batch, isolate=True)
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed; tell every caller
            final = [(unit, None, exc) for unit in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Unit, Any, BaseException | None]]] = {}
        for item in final:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():  # one wake-up per event loop, not per unit
            loop.call_soon_threadsafe(_resolve_all, items)
        if self.on_timing is not None:
            self.on_timing("write", time.perf_counter() - start)

    def _attempt(
        self, conn: Any, session: SqlSession, batch: list[_Unit], *, isolate: bool
    ) -> list[tuple[_Unit, Any, BaseException | None]]:
        results: list[tuple[_Unit, Any, BaseException | None]] = []
        deferred: list[tuple[str, Any]] = []
        try:
            session.forget()
            session.units = len(batch)
            session.send_text(self.begin_write)
            for unit in batch:
                session.deferred = []
                if not isolate:
                    try:
                        result = unit.fn(session)
                    except Exception as exc:
                        raise _UnitFailed from exc
                else:
                    conn.execute("SAVEPOINT unit")
                    try:
                        result = unit.fn(session)
                        session.flush()  # what it sent fails here, in its own savepoint
                    except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                        session.discard()
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                        session.forget()
                        results.append((unit, None, exc))
                        continue
                    conn.execute("RELEASE unit")
                deferred.extend(session.deferred)
                results.append((unit, result, None))
            if not isolate:
                try:
                    session.flush()  # a sent statement of some unit failed: find it in the replay
                except Exception as exc:
                    raise _UnitFailed from exc
            self._run_deferred(session, deferred)
            final: list[tuple[_Unit, Any, BaseException | None]] = []
            for unit, result, error in results:
                if error is None and isinstance(result, Finish):
                    try:
                        result = result.fn(session)
                    except BaseException as exc:  # noqa: BLE001
                        error = exc
                final.append((unit, result, error))
            session.send_text("COMMIT")  # with the batch's last sent statements, in one round trip
            session.flush()
        except BaseException as exc:
            session.discard()
            if not isinstance(exc, _UnitFailed):
                log.exception("write batch failed")
            session.deferred = []
            session.forget()
            if self._in_transaction(conn):
                conn.execute("ROLLBACK")
            raise
        return final

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        for _ in self._reader_threads:
            self._reads.put(_STOP)
        for thread in self._reader_threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        with self._lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()
