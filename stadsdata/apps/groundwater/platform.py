"""The groundwater app's use of a stadsdata platform, through its public HTTP API only.

A transport is one function (method, path below the service root, JSON body) → JSON answer, as in
the cycling app, so that tests and other deployments can swap it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from stadsdata.access.tokens import client_headers

Transport = Callable[[str, str, Any], Any]
"""(method, path below the service root, JSON body) -> JSON answer."""

PAGE = 10_000


class PlatformError(RuntimeError):
    """The platform answered with an error, or could not be reached."""


def http_transport(base_url: str, timeout: float = 30.0) -> Transport:
    """A transport over HTTP to a running stadsdata, e.g. ``http://127.0.0.1:8080/v1.1``; with access control on,
    it sends the token in ``$STADSDATA_TOKEN``."""
    root = base_url.rstrip("/")
    headers = client_headers()

    def send(method: str, path: str, body: Any) -> Any:
        url = path if path.startswith("http") else f"{root}/{path.lstrip('/')}"
        url = urllib.parse.quote(url, safe=":/?&=$(),'@%+*;")  # spaces of query options, as a browser would
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise PlatformError(f"{method} {url}: {e.code} {e.read().decode(errors='replace')[:500]}") from None
        except urllib.error.URLError as e:
            raise PlatformError(f"{method} {url}: {e.reason}") from None
        return json.loads(raw) if raw else {}

    return send


def instant(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_instant(text: str) -> datetime:
    """A phenomenonTime (an instant, or the start of an interval) as an aware datetime."""
    return datetime.fromisoformat(text.split("/")[0].replace("Z", "+00:00"))


class Platform:
    def __init__(self, transport: Transport) -> None:
        self.send = transport

    def find(self, entity_set: str, flt: str, select: str = "") -> list[dict[str, Any]]:
        query = f"$filter={urllib.parse.quote(flt)}&$top=1000" + (f"&$select={select}" if select else "")
        return list(self.send("GET", f"{entity_set}?{query}", None).get("value", []))

    def link(self, entity_set: str, body: dict[str, Any]) -> dict[str, int]:
        """A link to the entity of that name, created first when there is none."""
        quoted = body["name"].replace("'", "''")
        found = self.find(entity_set, f"name eq '{quoted}'", "id")
        entity = found[0] if found else self.send("POST", entity_set, body)
        return {"@iot.id": int(entity["@iot.id"])}

    def observations(
        self, datastream: int, after: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[datetime, Any]]:
        """(phenomenonTime, result) of a Datastream, oldest first, in (after, until]."""
        parts = []
        if after is not None:
            parts.append(f"phenomenonTime gt {instant(after)}")
        if until is not None:
            parts.append(f"phenomenonTime le {instant(until)}")
        query = f"$select=phenomenonTime,result&$orderby=phenomenonTime asc&$top={PAGE}"
        if parts:
            query += "&$filter=" + urllib.parse.quote(" and ".join(parts))
        page = self.send("GET", f"Datastreams({datastream})/Observations?{query}", None)
        rows = list(page.get("value", []))
        while "@iot.nextLink" in page:
            page = self.send("GET", page["@iot.nextLink"], None)
            rows += page.get("value", [])
        return [(parse_instant(r["phenomenonTime"]), r["result"]) for r in rows]

    def latest(self, datastream: int) -> tuple[datetime, Any] | None:
        page = self.send(
            "GET",
            f"Datastreams({datastream})/Observations?$select=phenomenonTime,result&$orderby=phenomenonTime desc&$top=1",
            None,
        )
        rows = page.get("value", [])
        return (parse_instant(rows[0]["phenomenonTime"]), rows[0]["result"]) if rows else None

    def add_observations(self, datastream: int, rows: Iterable[tuple[datetime, Any, dict[str, Any] | None]]) -> int:
        """Store (time, result, parameters) rows in one CreateObservations request; returns how many."""
        data = [[instant(t), result, params] for t, result, params in rows]
        if not data:
            return 0
        body = [
            {
                "Datastream": {"@iot.id": datastream},
                "components": ["phenomenonTime", "result", "parameters"],
                "dataArray": data,
            }
        ]
        answer = self.send("POST", "CreateObservations", body)
        failed = [r for r in answer if isinstance(r, str) and r.startswith("error")]
        if failed:
            raise PlatformError(f"CreateObservations refused {len(failed)} row(s), the first: {failed[0]}")
        return len(data)

    def delete_observations(self, datastream: int, after: datetime) -> int:
        """Delete a Datastream's Observations from ``after`` on (inclusive); returns how many."""
        flt = urllib.parse.quote(f"phenomenonTime ge {instant(after)}")
        gone = 0
        while True:
            page = self.send(
                "GET", f"Datastreams({datastream})/Observations?$select=id&$top={PAGE}&$filter={flt}", None
            )
            ids = [r["@iot.id"] for r in page.get("value", [])]
            if not ids:
                return gone
            for i in ids:
                self.send("DELETE", f"Observations({i})", None)
            gone += len(ids)
