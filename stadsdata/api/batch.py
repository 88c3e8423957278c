"""``$batch``: many requests in one, in the OData JSON format and the multipart format.

Each inner request is dispatched through the same ASGI application as any
other request, so it passes the same parsing, planning, access policy and
error handling. Requests of one atomicity group (JSON) or change set
(multipart) run in one store transaction: they all commit, or none does.
A URL may start with ``$<id>`` to refer to the entity created by an earlier
request of the batch (OData's Content-ID referencing), and a body may link to
it with ``{"@iot.id": "$<id>"}`` (STA 1.1 clause 11).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message

from stadsdata.errors import BadRequest
from stadsdata.model.entities import Registry
from stadsdata.store.base import Store

MAX_REQUESTS = 1000
_REF = re.compile(r"^\$([A-Za-z0-9_.-]+)(.*)$")
_CREATED = re.compile(r"/([A-Za-z]+)\((\d+)\)$")


@dataclass
class SubRequest:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    group: str | None = None
    depends_on: list[str] = field(default_factory=list)


@dataclass
class SubResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json_body(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body.decode("utf-8", "replace")


class Batch:
    """Runs the inner requests of one ``$batch`` request against ``app``."""

    def __init__(self, app: ASGIApp, store: Store, registry: Registry, request: Request, prefix: str) -> None:
        self.app = app
        self.store = store
        self.request = request
        self.prefix = prefix  # "/v1.1"
        self.locations: dict[str, str] = {}  # request id → path of the entity it created
        # relation name → entity set it leads to (the names are the same from every type)
        self.targets = {rel.name: registry.target(rel).set_name for t in registry for rel in t.relations}

    def _resolve_body(self, sub: SubRequest) -> bytes:
        """``sub``'s body with each ``{"@iot.id": "$<id>"}`` replaced by the id request ``<id>`` created."""
        if b'"$' not in sub.body or "json" not in sub.headers.get("content-type", "json").lower():
            return sub.body
        try:
            doc = orjson.loads(sub.body)
        except orjson.JSONDecodeError:
            return sub.body  # the request itself reports it
        return orjson.dumps(self._resolve(doc, None, sub.id))

    def _resolve(self, value: Any, target: str | None, rid: str) -> Any:
        if isinstance(value, list):
            return [self._resolve(v, target, rid) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: self._resolve(v, self.targets.get(k), rid) for k, v in value.items()}
        ref = value.get("@iot.id")
        if isinstance(ref, str) and ref.startswith("$"):
            location = self.locations.get(ref[1:])
            m = _CREATED.search(location or "")
            if m is None:
                raise BadRequest(f"request {rid}: {ref!r} refers to no entity created earlier in this batch")
            if target is not None and m.group(1) != target:
                raise BadRequest(
                    f"request {rid}: {ref!r} is one of the {m.group(1)}, where one of the {target} belongs"
                )
            out["@iot.id"] = int(m.group(2))
        return out

    def _target(self, url: str) -> tuple[str, str]:
        """Path and query string of an inner request's URL (relative, absolute path, full URL, or $ref)."""
        m = _REF.match(url)
        if m:
            found = self.locations.get(m.group(1))
            if found is None:
                raise BadRequest(f"{url!r} refers to ${m.group(1)}, which created nothing earlier in this batch")
            url = found + m.group(2)
        parts = urlsplit(url)
        path = parts.path
        if not path.startswith("/"):
            path = f"{self.prefix}/{path}"
        elif not path.startswith(self.prefix + "/") and path != self.prefix:
            path = self.prefix + path
        if path.rstrip("/").endswith("/$batch"):
            raise BadRequest("a $batch request cannot contain another $batch")
        return path, parts.query

    async def run_one(self, sub: SubRequest) -> SubResponse:
        path, query = self._target(sub.url)
        body = self._resolve_body(sub)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sub.headers.items()]
        auth = self.request.headers.get("authorization")
        if auth and "authorization" not in {k.lower() for k in sub.headers}:
            headers.append((b"authorization", auth.encode("latin-1")))
        scope = dict(self.request.scope)
        scope.update(
            method=sub.method.upper(),
            path=path,
            raw_path=path.encode(),
            query_string=query.encode(),
            headers=headers,
            root_path="",
        )
        scope.pop("router", None)
        scope.pop("endpoint", None)
        scope.pop("path_params", None)
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        out_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    out_headers[k.decode("latin-1")] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        response = SubResponse(status, out_headers, b"".join(chunks))
        location = out_headers.get("location")
        if location:
            self.locations[sub.id] = urlsplit(location).path
        return response

    async def run(self, subs: list[SubRequest]) -> list[tuple[SubRequest, SubResponse]]:
        """Run in order; consecutive requests of one group form one transaction."""
        if len(subs) > MAX_REQUESTS:
            raise BadRequest(f"a $batch may hold at most {MAX_REQUESTS} requests")
        results: list[tuple[SubRequest, SubResponse]] = []
        failed: set[str] = set()
        i = 0
        while i < len(subs):
            group = subs[i].group
            j = i + 1
            while group is not None and j < len(subs) and subs[j].group == group:
                j += 1
            chunk = subs[i:j]
            if group is None:
                sub = chunk[0]
                response = await self._guarded(sub, failed, self.run_one)
                results.append((sub, response))
                if response.status >= 400:
                    failed.add(sub.id)
            else:
                results.extend(await self._run_group(chunk, failed))
            i = j
        return results

    async def _guarded(
        self, sub: SubRequest, failed: set[str], run: Callable[[SubRequest], Awaitable[SubResponse]]
    ) -> SubResponse:
        missing = [d for d in sub.depends_on if d in failed]
        if missing:
            return _error(424, "failed-dependency", f"request {sub.id} depends on failed request {missing[0]}")
        try:
            return await run(sub)
        except BadRequest as exc:
            return SubResponse(exc.status, {"content-type": "application/json"}, orjson.dumps(exc.to_json()))

    async def _run_group(self, chunk: list[SubRequest], failed: set[str]) -> list[tuple[SubRequest, SubResponse]]:
        for sub in chunk:
            if sub.method.upper() == "GET":
                raise BadRequest(f"request {sub.id}: an atomic change set may only contain changes, not GET")
        responses: list[SubResponse] = []
        failure: SubResponse | None = None
        try:
            async with self.store.transaction():
                for sub in chunk:
                    response = await self._guarded(sub, failed, self.run_one)
                    responses.append(response)
                    if response.status >= 400:
                        failure = response
                        raise _Abort
        except _Abort:
            pass
        if failure is None:
            return list(zip(chunk, responses, strict=True))
        failed.add(chunk[0].group or "")
        for sub in chunk:
            failed.add(sub.id)
            self.locations.pop(sub.id, None)
        return [(sub, failure) for sub in chunk]


class _Abort(Exception):
    """Rolls back an atomic group after one of its requests failed."""


def _error(status: int, code: str, message: str) -> SubResponse:
    body = orjson.dumps({"code": code, "message": message})
    return SubResponse(status, {"content-type": "application/json"}, body)


# -- the JSON format -------------------------------------------------------------------


def parse_json_batch(doc: object) -> list[SubRequest]:
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise BadRequest('a JSON batch is an object {"requests": [{"id": "1", "method": "GET", "url": "Things"}, ...]}')
    subs: list[SubRequest] = []
    seen: set[str] = set()
    groups: set[str] = set()
    for n, item in enumerate(doc["requests"]):
        where = f"requests[{n}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        rid = item.get("id", str(n))
        method, url = item.get("method"), item.get("url")
        if not isinstance(rid, str) or not rid:
            raise BadRequest(f"{where}.id must be a non-empty string")
        if rid in seen or rid in groups:
            raise BadRequest(f"{where}.id {rid!r} is used twice")
        seen.add(rid)
        if not isinstance(method, str) or method.upper() not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            raise BadRequest(f"{where}.method must be GET, POST, PATCH, PUT or DELETE")
        if not isinstance(url, str) or not url:
            raise BadRequest(f"{where}.url must be a URL relative to the service root, as in Things(1)")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise BadRequest(f"{where}.headers must be an object of strings")
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name) or not value.isascii() or not value.isprintable():
                raise BadRequest(
                    f"{where}.headers: {name!r} is not an HTTP header; names are tokens and values printable ASCII"
                )
        group = item.get("atomicityGroup")
        if group is not None and not isinstance(group, str):
            raise BadRequest(f"{where}.atomicityGroup must be a string")
        previous = subs[-1].group if subs else None
        if group is not None and group != previous and group in groups:
            raise BadRequest(f"{where}: the requests of atomicity group {group!r} must be adjacent")
        if group is not None and (group in seen or group == rid):
            raise BadRequest(f"{where}: atomicity group {group!r} has the name of a request; names must be unique")
        depends = item.get("dependsOn") or []
        earlier = seen | (groups - {group})
        if not isinstance(depends, list) or not all(isinstance(d, str) and d in earlier for d in depends):
            raise BadRequest(
                f"{where}.dependsOn must list ids of earlier requests or atomicity groups (other than its own)"
            )
        body = b"" if item.get("body") is None else orjson.dumps(item["body"])
        if body and not any(k.lower() == "content-type" for k in headers):
            headers = {**headers, "content-type": "application/json"}
        subs.append(SubRequest(rid, method, url, dict(headers), body, group, list(depends)))
        if group is not None:
            groups.add(group)
    return subs


def json_batch_response(results: list[tuple[SubRequest, SubResponse]]) -> Response:
    out = []
    for sub, resp in results:
        item: dict[str, Any] = {"id": sub.id, "status": resp.status}
        if sub.group is not None:
            item["atomicityGroup"] = sub.group
        headers = {k: v for k, v in resp.headers.items() if k in ("location", "content-type", "allow")}
        if headers:
            item["headers"] = headers
        body = resp.json_body()
        if body is not None:
            item["body"] = body
        out.append(item)
    return Response(orjson.dumps({"responses": out}), media_type="application/json")


# -- the multipart format --------------------------------------------------------------


def _boundary(content_type: str) -> str:
    m = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not m:
        raise BadRequest("a multipart $batch needs a boundary in its Content-Type")
    return m.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise BadRequest("the multipart body has no parts between its boundaries")
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        parts.append(piece.removeprefix(b"\r\n").removeprefix(b"\n").removesuffix(b"\r\n").removesuffix(b"\n"))
    return parts


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _headers_and_body(part: bytes) -> tuple[dict[str, str], bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in part:
            head, body = part.split(sep, 1)
            break
    else:
        head, body = part, b""
    parsed = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
    return {k.lower(): v for k, v in parsed.items()}, body


def _http_request(part: bytes, rid: str, group: str | None) -> SubRequest:
    headers, inner = _headers_and_body(part)
    if not headers.get("content-type", "").lower().startswith("application/http"):
        raise BadRequest("each part of a multipart $batch must have Content-Type: application/http")
    content_id = headers.get("content-id", rid)
    line_end = inner.find(b"\n")
    if line_end < 0:  # a request line alone: a GET without headers
        line_end = len(inner)
    request_line = inner[:line_end].decode("latin-1").strip()
    if not request_line:
        raise BadRequest(f"part {rid}: no request line")
    fields = request_line.split(" ")
    if len(fields) < 2:
        raise BadRequest(f"part {rid}: the request line {request_line!r} is not 'METHOD URL HTTP/1.1'")
    method, url = fields[0], fields[1]
    http_headers, body = _headers_and_body(inner[line_end + 1 :])
    keep = {k: v for k, v in http_headers.items() if k in ("content-type", "authorization")}
    return SubRequest(content_id, method, url, keep, body.strip(), group)


def parse_multipart_batch(body: bytes, content_type: str) -> list[SubRequest]:
    subs: list[SubRequest] = []
    for n, part in enumerate(_split(body, _boundary(content_type))):
        headers, inner = _headers_and_body(part)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            group = f"changeset{n}"
            for m, cpart in enumerate(_split(inner, _boundary(ctype))):
                subs.append(_http_request(cpart, f"{n}.{m}", group))
        else:
            subs.append(_http_request(part, str(n), None))
    return subs


def _http_part(resp: SubResponse, content_id: str | None) -> bytes:
    reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else ""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {resp.status} {reason}"]
    for k in ("content-type", "location"):
        if k in resp.headers:
            lines.append(f"{k.title()}: {resp.headers[k]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


def multipart_batch_response(results: list[tuple[SubRequest, SubResponse]]) -> Response:
    boundary = f"batchresponse_{uuid.uuid4()}"
    out = b""
    i = 0
    while i < len(results):
        sub, resp = results[i]
        if sub.group is None:
            out += f"--{boundary}\r\n".encode() + _http_part(resp, None) + b"\r\n"
            i += 1
            continue
        j = i
        while j < len(results) and results[j][0].group == sub.group:
            j += 1
        if resp.status >= 400:  # a failed change set: one response for all its requests (OData 4.0 §11.7.4)
            out += f"--{boundary}\r\n".encode() + _http_part(resp, None) + b"\r\n"
            i = j
            continue
        changeset = f"changesetresponse_{uuid.uuid4()}"
        inner = b""
        for csub, cresp in results[i:j]:
            inner += f"--{changeset}\r\n".encode() + _http_part(cresp, csub.id) + b"\r\n"
        inner += f"--{changeset}--\r\n".encode()
        out += f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode() + inner
        i = j
    out += f"--{boundary}--\r\n".encode()
    return Response(out, media_type=f"multipart/mixed; boundary={boundary}")
