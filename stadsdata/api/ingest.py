"""LoRaWAN webhooks: ``POST /ingest/ttn`` (The Things Stack) and ``POST /ingest/chirpstack`` (ChirpStack).

The network server sends the shared secret (setting ``webhook_secret``) as
``Authorization: Bearer <secret>``; anything else is 401. Without a secret configured the
webhooks are off and answer 503 saying so, rather than accepting uplinks from anyone.

An uplink is answered 200 only after ``Service.ingest`` committed it; a redelivered uplink is
answered 200 too, storing nothing (idempotent). A body that does not decode (not JSON, a
device not in the mapping, a field that does not convert) is kept as a dead letter and answered
400 (not JSON) or 422 with the reason and the dead letter's id. Messages that are not uplinks are
answered 200 and ignored.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stadsdata.ingest import lorawan
from stadsdata.ingest.base import DecodeError, Decoder
from stadsdata.ingest.connectors import decoders_for, mapping_of
from stadsdata.service import Service
from stadsdata.settings import Settings

log = logging.getLogger(__name__)

PATHS = {"/ingest/ttn": lorawan.TTN_SOURCE, "/ingest/chirpstack": lorawan.CHIRPSTACK_SOURCE}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object) -> Response:
    return _json({"code": code, "message": message, **extra}, status, headers)


class Webhooks:
    """The webhook handlers of one service and mapping."""

    def __init__(self, settings: Settings, service: Service) -> None:
        self.settings = settings
        self.service = service
        self.secret = settings.webhook_secret.encode() if settings.webhook_secret else None
        self.decoders: dict[str, Decoder] = decoders_for(mapping_of(settings))  # a wrong mapping stops the start

    def handler(self, source: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await self.receive(request, source)

        return handle

    async def receive(self, request: Request, source: str) -> Response:
        if request.method != "POST":
            return _error(
                405, "method-not-allowed", f"{request.method} is not supported here; use POST", {"Allow": "POST"}
            )
        if self.secret is None:
            return _error(
                503,
                "webhooks-off",
                "the LoRaWAN webhooks are off: set webhook_secret (STADSDATA_WEBHOOK_SECRET) and send it as "
                "'Authorization: Bearer <secret>'",
            )
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.secret):
            what = "no Authorization header" if not given else "a wrong secret"
            return _error(
                401,
                "unauthorized",
                f"{what}: send the webhook secret as 'Authorization: Bearer <secret>' (a custom header of the "
                "webhook or HTTP integration)",
                {"WWW-Authenticate": 'Bearer realm="stadsdata ingest"'},
            )
        if source == lorawan.CHIRPSTACK_SOURCE:
            event = request.query_params.get("event", "up")
            if event != "up":
                return _json({"stored": 0, "ignored": f"ChirpStack {event} event: only uplinks are stored"})
        body = await self._body(request)
        if body is None:
            return _error(
                413,
                "payload-too-large",
                f"the request body is larger than the limit of {self.settings.max_body_bytes} bytes",
            )
        try:
            message = self.decoders[source](body, None)
        except DecodeError as exc:
            reason = str(exc)
            letter = await self.service.dead_letter(source, lorawan.PATH, reason, body)
            log.warning("ingest %s: dead letter %d: %s", source, letter, reason)
            status = 400 if isinstance(exc, lorawan.MalformedPayload) else 422
            return _error(
                status,
                "dead-lettered",
                f"{reason} (kept as dead letter {letter}; after fixing, replay it: stadsdata dead-letters replay "
                f"{letter})",
                deadLetter=letter,
            )
        if not message.readings:
            return _json({"stored": 0, "ignored": "not an uplink with application data"})
        delivery = await self.service.ingest(message)
        if delivery.duplicate:
            return _json({"stored": 0, "duplicate": True, "key": message.key})
        out: dict[str, object] = {"stored": len(delivery.created), "duplicate": False, "key": message.key}
        if delivery.rejected:
            out["rejected"] = delivery.rejected
            out["message"] = "readings the store refused were kept as a dead letter (stadsdata dead-letters list)"
        return _json(out)

    async def _body(self, request: Request) -> bytes | None:
        """The body, or None beyond ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def routes(settings: Settings, service: Service) -> list[Route]:
    """The webhook routes; loads the ingest mapping, so a wrong one raises ``MappingError`` here."""
    hooks = Webhooks(settings, service)
    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
    return [Route(path, hooks.handler(source), methods=methods) for path, source in PATHS.items()]
