"""Operations: health probes, Prometheus metrics and one structured log line per request.

- ``GET /health/live``: the process answers (liveness).
- ``GET /health/ready``: the store answers a query within a few seconds and, when MQTT is on, the
  broker runs (embedded) or is connected (external) (readiness); 503 otherwise, and while the server
  shuts down.
- ``GET /metrics``: the Prometheus text format (prometheus-client), from a registry of the app's own.
- ``RequestLog``: an ASGI middleware that gives every request an id (``X-Request-Id``, taken from
  the request when it is a plain token, else new), counts and times it per route class, and logs
  one line per request on the ``stadsdata.access`` logger. Lines carry no personal data: no
  client address, no query string, no body; ids in paths are replaced by ``(id)``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stadsdata.model.entities import Registry

access_log = logging.getLogger("stadsdata.access")

READY_TIMEOUT = 5.0
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY = re.compile(r"\([^)]*\)")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one application, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "stadsdata_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "stadsdata_http_request_seconds",
            "Time from the request to the end of its response",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingested = Counter(
            "stadsdata_observations_ingested",
            "Observations stored, by the path they came in on (http, mqtt, lorawan, file)",
            ["path"],
            registry=r,
        )
        self.rejected = Counter(
            "stadsdata_observations_rejected",
            "Observations refused (bad input) or dead-lettered, by path",
            ["path"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "stadsdata_store_seconds",
            "Time of store transactions: a read (all statements of one request) or a write batch (one commit)",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_gauges = Gauge("stadsdata_store", "Store connections and queued writes", ["what"], registry=r)

    def watch_store(self, store: Any) -> None:
        """Time the store's transactions and export its connection and queue sizes."""
        observe = {kind: self.store_seconds.labels(kind).observe for kind in ("read", "write")}
        store.on_timing = lambda kind, seconds: observe[kind](seconds)
        for what, fn in store.gauges().items():
            self.store_gauges.labels(what).set_function(fn)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format the scraper's ``Accept`` header asks for (text or OpenMetrics)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def route_class(path: str, known: frozenset[str]) -> str:
    """``path`` with ids replaced by ``(id)``; ``other`` when it holds a name the API does not know
    (so that random paths cannot grow the metrics without bound)."""
    template = _KEY.sub("(id)", path)
    for segment in template.strip("/").split("/"):
        if segment.removesuffix("(id)") not in known:
            return "other"
    return template


def known_segments(registry: Registry, extra: Iterable[str]) -> frozenset[str]:
    names = {"", "v1.1", "$ref", "$value", *extra}
    for t in registry:
        names.add(t.set_name)
        names.update(p.name for p in t.properties)
        names.update(r.name for r in t.relations)
    return frozenset(names)


class RequestLog:
    """Request id, metrics and one access-log line per request (an ASGI middleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, known: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known = known
        self._routes: dict[str, str] = {}
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # the metrics' children per request class

    def _route(self, path: str) -> str:
        route = self._routes.get(path)
        if route is None:
            route = route_class(path, self.known)
            if len(self._routes) < 10_000:
                self._routes[path] = route
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.fullmatch(text):
                    request_id = text
                break
        if request_id is None:
            # A correlation id, not a secret: 64 bits from the process's generator, without the system call of
            # secrets.token_hex, made for every request.
            request_id = f"{random.getrandbits(64):016x}"
        header = (b"x-request-id", request_id.encode())
        status = 500
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            method = scope["method"]
            route = self._route(scope["path"])
            series = self._series.get((method, route, status))
            if series is None:
                series = (
                    self.metrics.requests.labels(method, route, str(status)),
                    self.metrics.latency.labels(method, route),
                )
                if len(self._series) < 10_000:
                    self._series[(method, route, status)] = series
            series[0].inc()
            series[1].observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "bytes": size,
                    },
                )


def routes(
    metrics: Metrics,
    store: Any,
    shutting_down: Callable[[], bool],
    mqtt_problem: Callable[[], str | None] | None = None,
) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        if shutting_down():
            return JSONResponse({"status": "stopping"}, 503)
        try:
            await asyncio.wait_for(store.ping(), READY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure of the store means not ready
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return JSONResponse({"status": "unavailable", "store": reason}, 503)
        if mqtt_problem is None:
            return JSONResponse({"status": "ready", "store": "ok"})
        problem = mqtt_problem()
        if problem is not None:
            return JSONResponse({"status": "unavailable", "store": "ok", "mqtt": problem}, 503)
        return JSONResponse({"status": "ready", "store": "ok", "mqtt": "ok"})

    async def metrics_page(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    return [
        Route("/health/live", live, methods=["GET", "HEAD"]),
        Route("/health/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_page, methods=["GET", "HEAD"]),
    ]


# -- log format ---------------------------------------------------------------------------

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class ReadableFormatter(logging.Formatter):
    """For a terminal: time, level, message, and the request id and duration of access lines."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        text = f"{when} {record.levelname:<7} {record.getMessage()}"
        extra = record.__dict__
        if "request_id" in extra:
            text += f"  {extra['duration_ms']:.1f} ms  {extra['bytes']} B  id={extra['request_id']}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


YOUNG_OBJECTS = 10_000
"""Container allocations (net) between two collections of the youngest generation; Python's default is 700."""


def tune_garbage_collection() -> None:
    """Garbage collection for a serving process: call it once, after the application is built.

    The objects made while starting (modules, the registry, the grammar, compiled statements) are frozen out of
    every later collection: they never become garbage, yet walking them in each full collection made every second
    10,000-row CreateObservations request take twice as long. The youngest generation is collected after
    ``YOUNG_OBJECTS`` allocations instead of 700: a bulk request's rows are alive while it runs, and at 700 they
    were promoted and walked again and again (over 600,000 rows in requests of 10,000: 1,729 young, 157 middle
    and 10 full collections taking 384 ms, against 74 and 6 and none taking 56 ms).
    """
    gc.collect()
    gc.freeze()
    _, middle, full = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, full)


FLUSH_EVERY = 0.2
"""Seconds the JSON lines of a log file or pipe may wait in memory before they are written."""


class BufferedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines for a file or pipe, written through a buffer: at most every ``FLUSH_EVERY`` seconds (a thread of its
    own), at once for a warning or an error, and at exit (``logging.shutdown``).

    The server writes an access line per request. Written one by one, each line was a system call that also
    handed the interpreter lock to the writer thread and back: about 6 % of the single POST rate on PostgreSQL.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._closed = threading.Event()
        threading.Thread(target=self._flush_often, name="stadsdata-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own rule: report, never raise
            self.handleError(record)

    def _flush_often(self) -> None:
        while not self._closed.wait(FLUSH_EVERY):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def configure_logging(level: str = "INFO", stream: Any = None, json_lines: bool | None = None) -> None:
    """Log to ``stream`` (stderr): JSON lines when it is not a terminal, readable lines when it is. JSON lines
    to a file or pipe go through a buffer (``BufferedLineHandler``); a terminal gets each line at once."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    fileno = _fileno(stream)
    if json_lines and fileno is not None:
        stream.flush()
        buffered = open(fileno, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115 - the handler owns it
        handler: logging.StreamHandler[Any] = BufferedLineHandler(buffered)
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else ReadableFormatter())
    # Neither format shows the caller's file and line or the thread and process: not looking them up takes
    # a fifth off a log line, and the server writes one per request (the logging documentation's advice).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger("stadsdata")
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.StringIO and the like, a closed stream
        return None
