"""The ASGI application: ``create_app(settings)`` wires store, service and routes."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stadsdata.access import Access, Caller, Role
from stadsdata.access.audit import AuditLog
from stadsdata.access.audit import entries as audit_entries
from stadsdata.access.identity import ALL_PROJECTS
from stadsdata.api import batch, dataarray, ops
from stadsdata.api.serialize import Serializer
from stadsdata.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    QuerySyntaxError,
    STAError,
    Unauthorized,
    UnsupportedMediaType,
)
from stadsdata.model.dataarray import parse_create
from stadsdata.model.entities import Registry, sensing_registry
from stadsdata.model.values import format_value, parse_instant
from stadsdata.mqtt import Mqtt
from stadsdata.mqtt import enabled as mqtt_enabled
from stadsdata.query.ast import QueryOptions
from stadsdata.query.options import parse_options
from stadsdata.query.path import ResourcePath, parse_path
from stadsdata.query.plan import Paging
from stadsdata.service import Service
from stadsdata.settings import Settings
from stadsdata.store import open_store
from stadsdata.store.base import Collection, Entity

log = logging.getLogger(__name__)

VERSION_PATH = "/v1.1"
CONFORMANCE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/batch-request/batch-request",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/multi-datastream",
)
JSON_TYPES = ("application/json",)
READ = ("GET", "HEAD")
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
POST_ONLY = (VERSION_PATH + "/CreateObservations", VERSION_PATH + "/$batch")
JSON_PATCH = "application/json-patch+json"
# Path segments of the routes outside the entity sets (for the route classes of metrics).
OPS_SEGMENTS = ("CreateObservations", "$batch", "health", "live", "ready", "metrics", "api", "api.html")


def encode_skiptoken(keys: tuple[Any, ...]) -> str:
    """The sort keys of the last row of a page, as an opaque URL-safe token."""
    return base64.urlsafe_b64encode(orjson.dumps(list(keys))).decode().rstrip("=")


def decode_skiptoken(token: str) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise QuerySyntaxError("not a $skiptoken from an @iot.nextLink of this server", option="$skiptoken") from None
    if not isinstance(values, list) or any(isinstance(v, (dict, list)) for v in values):
        raise QuerySyntaxError("not a $skiptoken from an @iot.nextLink of this server", option="$skiptoken")
    return tuple(values)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def method_not_allowed(request: Request, allow: tuple[str, ...]) -> Response:
    """405 naming the methods that work here; OPTIONS answers with just that list."""
    allow = (*allow, "OPTIONS")
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": ", ".join(allow)})
    return error_response(
        MethodNotAllowed(
            f"{request.method} is not supported at {request.url.path}; use {', '.join(allow)}", allow=allow
        )
    )


def only(allow: tuple[str, ...], endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """``endpoint`` for the methods in ``allow``; any other method gets 405 (OPTIONS: 204) with an Allow header."""

    async def guarded(request: Request) -> Response:
        if request.method not in allow:
            return method_not_allowed(request, allow)
        return await endpoint(request)

    return guarded


def error_response(exc: STAError) -> Response:
    headers = {"Allow": ", ".join(exc.allow)} if isinstance(exc, MethodNotAllowed) else None
    return json_response(exc.to_json(), exc.status, headers)


class Api:
    """The request handlers, bound to one service."""

    def __init__(self, settings: Settings, registry: Registry, service: Service, access: Access) -> None:
        self.settings = settings
        self.registry = registry
        self.service = service
        self.access = access
        self._bases: dict[Any, str] = {}
        self._options: dict[tuple[tuple[str, str], ...], QueryOptions] = {}

    def base_url(self, request: Request) -> str:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        scope = request.scope
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        server = scope.get("server")
        key = (scope.get("scheme"), host, tuple(server) if server else None, scope.get("root_path"))
        found = self._bases.get(key)
        if found is None:
            if len(self._bases) > 256:  # clients choose the Host header; keep the memo small
                self._bases.clear()
            found = self._bases[key] = str(request.base_url).rstrip("/") + VERSION_PATH
        return found

    def options(self, params: dict[str, str]) -> QueryOptions:
        """The parsed query options; the same query strings come again and again (dashboards poll)."""
        key = tuple(params.items())
        found = self._options.get(key)
        if found is None:
            found = parse_options(params)  # errors are raised, not kept
            if len(self._options) > 1024:
                self._options.clear()
            self._options[key] = found
        return found

    async def root(self, request: Request) -> Response:
        base = self.base_url(request)
        return json_response(
            {
                "value": [{"name": t.set_name, "url": f"{base}/{t.set_name}"} for t in self.registry],
                "serverSettings": {"conformance": list(CONFORMANCE)},
            }
        )

    async def raw_body(self, request: Request) -> bytes:
        """The request body, refused with 413 beyond the configured size."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def body(self, request: Request, allowed: tuple[str, ...] = JSON_TYPES) -> tuple[Any, str]:
        """The parsed JSON body and its media type; 413/415/400 when it is too big, not JSON, or malformed."""
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in allowed:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {ctype!r}; send {' or '.join(allowed)}", content_type=ctype
            )
        raw = await self.raw_body(request)
        if not raw.strip():
            raise BadRequest("the request body is empty; send a JSON object", field="body")
        try:
            return orjson.loads(raw), ctype
        except orjson.JSONDecodeError as exc:
            raise BadRequest(
                f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                field="body",
                position=exc.pos,
            ) from None

    async def create_observations(self, request: Request) -> Response:
        """POST /CreateObservations: the dataArray bulk create."""
        caller = await self.caller(request)
        self.may_write(caller)
        body, _ = await self.body(request)
        groups = parse_create(body)
        results = await self.service.create_observations(groups, caller)
        base = self.base_url(request)
        links = [r if isinstance(r, str) else f"{base}/Observations({r})" for r in results]
        errors = sum(isinstance(r, str) for r in results)
        request.app.state.metrics.ingested.labels("http").inc(len(results) - errors)
        if errors:
            request.app.state.metrics.rejected.labels("http").inc(errors)
        return json_response(links, 201)

    async def batch(self, request: Request) -> Response:
        """POST /$batch, in the OData JSON format or the multipart/mixed format."""
        ctype = request.headers.get("content-type", "")
        runner = batch.Batch(request.app, self.service.store, self.registry, request, VERSION_PATH)
        if ctype.lower().startswith("multipart/mixed"):
            raw = await self.raw_body(request)
            results = await runner.run(batch.parse_multipart_batch(raw, ctype))
            return batch.multipart_batch_response(results)
        doc, _ = await self.body(request)
        results = await runner.run(batch.parse_json_batch(doc))
        return batch.json_batch_response(results)

    async def caller(self, request: Request) -> Caller:
        """Who sends the request (docs/access.md); kept on the request for the log and the audit."""
        caller = await self.access.authenticate(request.headers.get("authorization"))
        request.state.caller = caller
        return caller

    async def audit(self, request: Request) -> Response:
        """GET /audit: the audit log, for admins of every project (docs/access.md)."""
        caller = await self.caller(request)
        if caller.restricted and caller.identity.role(ALL_PROJECTS) != Role.ADMIN:
            raise Forbidden("the audit log is for admins of every project (a grant of admin on project *)")
        params = request.query_params
        since = 0
        if "since" in params:
            since = parse_instant(params["since"], "since")
        try:
            limit = min(int(params.get("limit", "1000")), 10_000)
            after = int(params.get("after", "0"))
        except ValueError:
            raise BadRequest("limit and after are whole numbers") from None
        subject = params.get("subject")
        rows = await self.service.store.run_read(lambda tx: audit_entries(tx, since, subject, limit, after))
        doc: dict[str, Any] = {"value": [e.to_json() for e in rows]}
        if len(rows) == limit:
            query = {k: v for k, v in params.items() if k != "after"} | {"after": str(rows[-1].id)}
            doc["nextLink"] = f"{str(request.base_url).rstrip('/')}/audit?{urlencode(query)}"
        return json_response(doc)

    @staticmethod
    def may_write(caller: Caller) -> None:
        """A request without a token changes nothing: 401 (with a token, what it may change is checked per entity)."""
        if caller.restricted and caller.identity.subject is None:
            raise Unauthorized("changing data needs a token: send it as Authorization: Bearer <token>")

    async def resource(self, request: Request) -> Response:
        path = parse_path(self.registry, request.path_params["path"])
        method = request.method
        if method not in path.methods:
            return method_not_allowed(request, path.methods)
        caller = await self.caller(request)
        if method == "GET" or method == "HEAD":
            return await self.get(request, path, caller)
        self.may_write(caller)
        if path.ref:
            if method == "DELETE":
                await self.service.remove_ref(path, caller)
            else:
                body, _ = await self.body(request)
                await self.service.add_ref(path, body, self.base_url(request), caller)
            return Response(status_code=204)
        base = self.base_url(request)
        serializer = Serializer(self.registry, base)
        if method == "POST":
            body, _ = await self.body(request)
            created = await self.service.create(path, body, caller)
            if path.target.name == "Observation":
                request.app.state.metrics.ingested.labels("http").inc()
            doc = serializer.entity(path.target, created)
            return json_response(doc, 201, {"Location": doc["@iot.selfLink"]})
        if method == "DELETE":
            await self.service.delete(path, caller)
            return Response(status_code=200)
        allowed = (*JSON_TYPES, JSON_PATCH) if method == "PATCH" else JSON_TYPES
        body, ctype = await self.body(request, allowed)
        mode = "json-patch" if ctype == JSON_PATCH else "patch" if method == "PATCH" else "put"
        updated = await self.service.update(path, body, mode, caller)  # type: ignore[arg-type]
        return json_response(serializer.entity(path.target, updated))

    async def get(self, request: Request, path: ResourcePath, caller: Caller) -> Response:
        params = dict(request.query_params)
        token = params.pop("$skiptoken", None)
        after = None if token is None else decode_skiptoken(token)
        options = self.options(params)
        if path.property is not None:
            if options != QueryOptions():
                given = ", ".join(k for k in params if k.startswith("$"))
                raise BadRequest(f"query options ({given}) do not apply to the property {path.property.name}")
            options = QueryOptions(select=(path.property.name,))
        elif path.ref and options.apply is not None:
            raise QuerySyntaxError("$apply aggregates Observations; it does not apply to references", option="$apply")
        elif path.ref:
            options = QueryOptions(
                filter=options.filter,
                orderby=options.orderby,
                top=options.top,
                skip=options.skip,
                count=options.count,
                select=("@iot.id",),
            )
        estimate = "count=estimated" in request.headers.get("prefer", "").replace(" ", "").lower()
        result = await self.service.read(
            path,
            options,
            caller.read,
            after=after,
            estimate_count=self.settings.estimated_count_above if estimate else 0,
        )
        base = self.base_url(request)
        serializer = Serializer(self.registry, base)
        data = result.data
        if path.property is not None:
            assert isinstance(data, Entity)
            value = data.values.get(path.property.name)
            shown = None if value is None else format_value(path.property.kind, value)
            if path.value:
                if shown is None:
                    return Response(status_code=204)
                text = shown if isinstance(shown, str) else orjson.dumps(shown).decode()
                return Response(text, media_type="text/plain")
            return json_response({path.property.name: shown})
        if not isinstance(data, Collection):
            if path.ref:
                return json_response(serializer.refs(path.target, data))
            return json_response(serializer.entity(path.target, data, result.plan))
        next_link = None
        if data.next_keys is not None:
            params.pop("$skip", None)
            params["$top"] = str(result.plan.top)
            params["$skiptoken"] = encode_skiptoken(data.next_keys)
            next_link = f"{base}/{path.text()}?{urlencode(params, safe='$', quote_via=quote)}"
        if path.ref:
            return json_response(serializer.refs(path.target, data, next_link))
        if result.plan.apply is not None:
            return json_response(serializer.aggregated(result.plan, data, next_link))
        headers = {"Preference-Applied": "count=estimated"} if data.count_estimated else None
        if result.plan.result_format == "dataArray":
            return json_response(dataarray.format_collection(result.plan, data, base, next_link), headers=headers)
        return json_response(serializer.collection(result.plan, data, next_link), headers=headers)


class App(Starlette):
    """Starlette, with the requests to entity paths (``/v1.1/Things…``, most of what the server
    answers) handed straight to their handler.

    They skip Starlette's routing and its exception layers (about half the time of a small request);
    ``resources`` answers errors itself. The middleware added with ``add_middleware`` (request log,
    audit) wraps both ways alike.
    """

    def __init__(self, resources: ASGIApp, sets: frozenset[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resources = resources
        self.sets = sets

    def build_middleware_stack(self) -> ASGIApp:
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        standard = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        app: ASGIApp = self._dispatch(ServerErrorMiddleware(standard, handler=error_handler, debug=self.debug))
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    def _dispatch(self, standard: ASGIApp) -> ASGIApp:
        resources, sets, prefix = self.resources, self.sets, VERSION_PATH + "/"

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                path = get_route_path(scope)
                if path.startswith(prefix):
                    rest = path[len(prefix) :]
                    end = len(rest)
                    for stop in ("(", "/"):
                        at = rest.find(stop, 0, end)
                        if at >= 0:
                            end = at
                    if rest[:end] in sets:
                        scope["path_params"] = {"path": rest}
                        await resources(scope, receive, send)
                        return
            await standard(scope, receive, send)

        return dispatch


def create_app(settings: Settings | None = None) -> Starlette:
    """The application for ``settings``; opens (and migrates) the store."""
    settings = settings or Settings()
    registry = sensing_registry()
    store = open_store(settings.db, registry, synchronous=settings.synchronous)
    service = Service(registry, store, Paging(settings.default_top, settings.max_top))
    access = Access(settings, store)
    api = Api(settings, registry, service, access)

    async def home(request: Request) -> Response:
        return RedirectResponse(VERSION_PATH)

    async def sta_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, STAError)
        return error_response(exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error for %s %s", request.method, request.url.path, exc_info=exc)
        return json_response({"code": "internal-error", "message": "the server failed to handle this request"}, 500)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Errors raised by the routing itself (no such route, method not allowed), as JSON like all others."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(NotFound(f"there is nothing at {request.url.path}; the API is at {VERSION_PATH}"))
        if exc.status_code == 405:  # a method no route knows (TRACE, …): name the ones this path answers
            return method_not_allowed(request, allowed_at(request.url.path))
        return json_response({"code": "http-error", "message": exc.detail}, exc.status_code, dict(exc.headers or {}))

    stopping = False
    mqtt = None
    if mqtt_enabled(settings):  # the embedded broker, or the connection to an external one (docs/mqtt.md)
        mqtt = Mqtt(
            settings,
            service,
            registry,
            created=lambda n: app.state.metrics.ingested.labels("mqtt").inc(n),
            access=access,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal stopping
        if mqtt is not None:
            await mqtt.start()
        yield
        stopping = True
        if mqtt is not None:
            await mqtt.stop()
        await store.close()

    def allowed_at(url_path: str) -> tuple[str, ...]:
        if url_path.rstrip("/") in ("", VERSION_PATH):
            return READ
        if url_path in POST_ONLY:
            return ("POST",)
        try:
            return parse_path(registry, url_path.removeprefix(VERSION_PATH + "/")).methods
        except STAError:
            return READ

    from starlette.routing import Mount

    from stadsdata import web
    from stadsdata.api import ingest, openapi

    docs = openapi.Docs(registry, api.base_url)  # GET /v1.1/api (OpenAPI) and /v1.1/api.html (Swagger UI)

    # Every route takes every method, so that a wrong method gets a 405 here instead of
    # falling through to the next route that matches the path.
    async def resources(scope: Scope, receive: Receive, send: Send) -> None:
        """An entity path: the handler, with the errors answered as the exception handlers below do."""
        request = Request(scope, receive)
        try:
            response = await api.resource(request)
        except STAError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return
        except Exception as exc:
            response = await server_error(request, exc)
        await response(scope, receive, send)

    app = App(
        resources,
        frozenset(t.set_name for t in registry),
        routes=[
            *web.routes(settings),  # the dashboard: /, /catalogue, /sensors, /datastreams/{id} (docs/dashboard.md)
            Route(VERSION_PATH, only(READ, api.root), methods=METHODS),
            Route(VERSION_PATH + "/", only(READ, api.root), methods=METHODS),
            *(
                Route(p, only(("POST",), e), methods=METHODS)
                for p, e in zip(POST_ONLY, (api.create_observations, api.batch), strict=True)
            ),
            Route(VERSION_PATH + "/api", only(READ, docs.document), methods=METHODS),
            Route(VERSION_PATH + "/api.html", only(READ, docs.page), methods=METHODS),
            Mount(VERSION_PATH + "/api-assets", docs.assets),
            *ingest.routes(settings, service),  # POST /ingest/ttn, /ingest/chirpstack (LoRaWAN webhooks)
            Route("/audit", only(READ, api.audit), methods=METHODS),  # the audit log (docs/access.md)
            Route(VERSION_PATH + "/{path:path}", api.resource, methods=METHODS),
        ],
        exception_handlers={STAError: sta_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    metrics = ops.Metrics()
    metrics.watch_store(store)

    def count_ingest(path: str, stored: int, rejected: int) -> None:
        metrics.ingested.labels(path).inc(stored)
        metrics.rejected.labels(path).inc(rejected)

    service.on_ingest = count_ingest
    app.router.routes.extend(ops.routes(metrics, store, lambda: stopping, None if mqtt is None else mqtt.problem))
    if access.enabled:
        app.add_middleware(AuditLog, access=access)
    app.add_middleware(ops.RequestLog, metrics=metrics, known=ops.known_segments(registry, OPS_SEGMENTS))
    app.state.service = service
    app.state.store = store
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.mqtt = mqtt
    app.state.access = access
    return app
