"""Feeding a server with the simulated city, through its public interfaces only.

* ``seed``: the Things, Locations, Sensors, ObservedProperties and Datastreams, created with
  ``POST /v1.1/...`` after looking each up by name, so that running it again creates nothing twice.
* ``backfill``: the history up to now on the bulk path, ``POST /v1.1/CreateObservations``
  (dataArray), from where each Datastream's phenomenonTime ends, with a progress bar.
* ``Live``: from then on each reading when its time comes: LoRaWAN stations as The Things Stack
  webhook uplinks (``POST /ingest/ttn``, mapped by the ingest mapping ``mapping_toml`` writes), the
  others as ``POST /v1.1/Observations``.
"""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from tqdm import tqdm  # type: ignore[import-untyped]

from stadsdata.sim.base import DAY, SIMULATOR, Simulator, Station, normal, uniform

BATCH_ROWS = 20_000
"""Rows per CreateObservations request in the backfill."""


class FeedError(Exception):
    """The server answered something the feed cannot go on with."""


class Client:
    """A small JSON client over one keep-alive HTTP connection."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Send; the parsed JSON answer (None when empty). Raises ``FeedError`` on a status of 300 or more."""
        data = None if body is None else orjson.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=sent)
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.close()  # a keep-alive connection the server closed: once more on a new one
                if attempt == 2:
                    raise
        if response.status >= 300:
            raise FeedError(f"{method} {path} answered {response.status}: {raw[:500].decode(errors='replace')}")
        return orjson.loads(raw) if raw else None

    def get(self, path: str, **params: str) -> Any:
        query = "&".join(f"{k}={quote(v, safe='$(),=/')}" for k, v in params.items())
        return self.request("GET", f"{path}?{query}" if query else path)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def instant(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Seeded:
    """A station as it is on the server: its Thing, and per payload field its Datastream and newest time."""

    station: Station
    simulator: Simulator
    thing: int
    datastreams: dict[str, int]
    last: dict[str, float] = field(default_factory=dict)

    def newest(self) -> float:
        """The time up to which all its Datastreams have readings (-inf when one has none)."""
        return min((self.last.get(f, -math.inf) for f in self.datastreams), default=-math.inf)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _every(client: Client, path: str, **params: str) -> list[dict[str, Any]]:
    """All entities of a collection, following @iot.nextLink."""
    page = client.get(path, **params)
    found: list[dict[str, Any]] = list(page["value"])
    while "@iot.nextLink" in page:
        link = urlsplit(page["@iot.nextLink"])
        page = client.request("GET", f"{link.path}?{link.query}")
        found += page["value"]
    return found


def _named(client: Client, entity_set: str, wanted: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The ids of the entities named as the keys of ``wanted``; the missing ones are created from its values."""
    ids: dict[str, int] = {}
    for name, body in wanted.items():
        found = client.get(f"/v1.1/{entity_set}", **{"$filter": f"name eq {_quoted(name)}", "$select": "id"})
        if found["value"]:
            ids[name] = found["value"][0]["@iot.id"]
        else:
            ids[name] = client.request("POST", f"/v1.1/{entity_set}", body)["@iot.id"]
    return ids


def datastream_name(station: Station, label: str) -> str:
    return f"{station.name}: {label}"


def seed(client: Client, simulators: Iterable[Simulator]) -> list[Seeded]:
    """Make sure every station of ``simulators`` exists on the server (looked up by name first)."""
    simulators = list(simulators)
    pairs = [(sim, st) for sim in simulators for st in sim.stations]
    phenomena = {s.phenomenon.name: s.phenomenon for _, st in pairs for s in st.streams}
    op_ids = _named(
        client,
        "ObservedProperties",
        {
            p.name: {"name": p.name, "definition": p.definition, "description": p.description}
            for p in phenomena.values()
        },
    )
    sensor_ids = _named(
        client,
        "Sensors",
        {
            st.sensor: {
                "name": st.sensor,
                "description": f"{st.sensor} (simulated by {SIMULATOR})",
                "encodingType": "text/html",
                "metadata": "https://github.com/stadsdata/stadsdata/blob/main/docs/dashboard.md",
                "properties": {"simulated": True},
            }
            for _, st in pairs
        },
    )
    existing = {
        t["name"]: t
        for t in _every(
            client,
            "/v1.1/Things",
            **{
                "$filter": f"properties/simulator eq {_quoted(SIMULATOR)}",
                "$select": "id,name",
                "$expand": "Datastreams($select=id,name,phenomenonTime;$top=1000)",
                "$top": "1000",
            },
        )
    }
    seeded = []
    for sim, st in pairs:

        def datastream(s: Any, st: Station = st) -> dict[str, Any]:
            return {
                "name": datastream_name(st, s.label),
                "description": f"{s.phenomenon.name} at {st.place}, every {st.interval // 60} minutes (simulated)",
                "observationType": s.observation_type,
                "unitOfMeasurement": s.unit.json(),
                "properties": {"simulated": True, "field": s.field, "interval_s": st.interval, "device_id": st.key},
                "Sensor": {"@iot.id": sensor_ids[st.sensor]},
                "ObservedProperty": {"@iot.id": op_ids[s.phenomenon.name]},
            }

        thing = existing.get(st.name)
        if thing is None:
            body = {
                "name": st.name,
                "description": st.description,
                "properties": {
                    "simulated": True,
                    "simulator": SIMULATOR,
                    "device_id": st.key,
                    "interval_s": st.interval,
                    **st.properties,
                },
                "Locations": [
                    {
                        "name": st.place,
                        "description": f"{st.place}, Enschede",
                        "encodingType": "application/geo+json",
                        "location": {"type": "Point", "coordinates": [st.lon, st.lat]},
                    }
                ],
                "Datastreams": [datastream(s) for s in st.streams],
            }
            created = client.request("POST", "/v1.1/Things", body)
            thing = client.get(
                f"/v1.1/Things({created['@iot.id']})",
                **{"$select": "id,name", "$expand": "Datastreams($select=id,name,phenomenonTime)"},
            )
        by_name = {d["name"]: d for d in thing["Datastreams"]}
        ids: dict[str, int] = {}
        last: dict[str, float] = {}
        for s in st.streams:
            ds = by_name.get(datastream_name(st, s.label))
            if ds is None:
                ds = client.request(
                    "POST", "/v1.1/Datastreams", {**datastream(s), "Thing": {"@iot.id": thing["@iot.id"]}}
                )
                ds["phenomenonTime"] = None
            ids[s.field] = ds["@iot.id"]
            if ds.get("phenomenonTime"):
                last[s.field] = parse_instant(ds["phenomenonTime"].split("/")[-1])
        seeded.append(Seeded(st, sim, thing["@iot.id"], ids, last))
    return seeded


def mapping_toml(seeded: Iterable[Seeded]) -> str:
    """The ingest mapping of the LoRaWAN stations (docs/ingest.md): device id → fields → Datastreams."""
    lines = [
        "# The ingest mapping of stadsdata demo: its LoRaWAN stations' uplinks (The Things Stack webhook)",
        "# to their Datastreams. Written by stadsdata demo; see docs/ingest.md.",
    ]
    for x in seeded:
        if x.station.transport != "ttn":
            continue
        lines += ["", "[[device]]", f'device_id = "{x.station.key}"', 'network = "ttn"', "[device.fields]"]
        for s in x.station.streams:
            spec = [f"datastream = {x.datastreams[s.field]}"]
            if s.convert is not None:
                spec.append(f'convert = "{s.convert}"')
            if s.offset:
                spec.append(f"offset = {s.offset!r}")
            lines.append(f"{s.field} = {{ {', '.join(spec)} }}")
    return "\n".join(lines) + "\n"


def readings(x: Seeded, start: float, end: float) -> Iterator[tuple[int, dict[str, float]]]:
    """The station's payloads in (start, end], skipping what it already has."""
    for t in x.station.slots(max(start, x.newest()), end):
        payload = x.simulator.sample(x.station, t)
        if payload is not None:
            yield t, payload


def backfill(client: Client, seeded: list[Seeded], start: float, end: float, progress: bool = True) -> int:
    """Post the readings of (start, end] that the server does not have yet through CreateObservations.

    Returns the number of Observations created. Each Datastream's newest time is advanced."""
    todo = {id(x): max(start, x.newest()) for x in seeded}
    total = sum(max(0, math.floor((end - todo[id(x)]) / x.station.interval)) * len(x.station.streams) for x in seeded)
    bar = tqdm(total=total, unit="obs", desc="history", disable=not progress or total == 0, leave=True)
    created = 0
    groups: dict[int, list[list[Any]]] = {}
    pending = 0

    def flush() -> None:
        nonlocal created, pending
        if not pending:
            return
        body = [
            {"Datastream": {"@iot.id": ds}, "components": ["phenomenonTime", "result"], "dataArray": rows}
            for ds, rows in groups.items()
        ]
        answer = client.request("POST", "/v1.1/CreateObservations", body)
        failed = [r for r in answer if isinstance(r, str) and r.startswith("error")]
        if failed:
            raise FeedError(f"CreateObservations refused {len(failed)} row(s), the first: {failed[0]}")
        created += len(answer)
        bar.update(pending)
        groups.clear()
        pending = 0

    try:
        for x in seeded:
            fields = {s.field: s for s in x.station.streams}
            for t, payload in readings(x, start, end):
                when = instant(t)
                for name, raw in payload.items():
                    groups.setdefault(x.datastreams[name], []).append([when, fields[name].stored(raw)])
                    pending += 1
                for name in payload:
                    x.last[name] = t
                if pending >= BATCH_ROWS:
                    flush()
        flush()
        bar.total = bar.n  # the estimate counted readings that lost uplinks and a dead battery never sent
        bar.refresh()
    finally:
        bar.close()
    return created


def uplink(x: Seeded, t: int, payload: dict[str, float], application: str = "enschede-groundwater") -> dict[str, Any]:
    """A The Things Stack v3 uplink message (the webhook's JSON body) carrying ``payload`` as decoded payload."""
    seed, key = x.simulator.seed, x.station.key
    f_cnt = (t - (x.simulator.anchor - 400 * DAY)) // x.station.interval % 65536
    rssi = round(-85 - 20 * uniform(seed, key, "rssi") + 3 * normal(seed, key, "rssi", t))
    snr = round(7 - 12 * uniform(seed, key, "snr") + 1.5 * normal(seed, key, "snr", t), 1)
    received = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    dev_eui = f"A84041{int(uniform(seed, key, 'eui') * (1 << 40)):010X}"
    return {
        "end_device_ids": {
            "device_id": key,
            "application_ids": {"application_id": application},
            "dev_eui": dev_eui,
        },
        "received_at": received,
        "uplink_message": {
            "f_port": 2,
            "f_cnt": f_cnt,
            "decoded_payload": payload,
            "rx_metadata": [
                {"gateway_ids": {"gateway_id": "enschede-stadhuis"}, "rssi": rssi, "snr": snr, "time": received}
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7 + int(uniform(seed, key, "sf") * 3)}},
                "frequency": "868100000",
            },
            "received_at": received,
        },
    }


class Live:
    """Sends each station's readings when their time comes on a clock that runs ``speed`` times the wall clock.

    The clock starts at ``start`` (the end of the backfill) when ``run`` is called."""

    def __init__(self, client: Client, seeded: list[Seeded], secret: str, start: float, speed: float = 1.0) -> None:
        self.client = client
        self.seeded = seeded
        self.secret = secret
        self.start = start
        self.speed = speed
        self.sent = 0
        self.last_sent: float | None = None

    def send(self, x: Seeded, t: int, payload: dict[str, float]) -> None:
        if x.station.transport == "ttn":
            self.client.request(
                "POST", "/ingest/ttn", uplink(x, t, payload), {"Authorization": f"Bearer {self.secret}"}
            )
        else:
            fields = {s.field: s for s in x.station.streams}
            for name, raw in payload.items():
                self.client.request(
                    "POST",
                    "/v1.1/Observations",
                    {
                        "Datastream": {"@iot.id": x.datastreams[name]},
                        "phenomenonTime": instant(t),
                        "result": fields[name].stored(raw),
                    },
                )
        for name in payload:
            x.last[name] = t
        self.sent += len(payload)
        self.last_sent = t

    def run(
        self,
        until: Callable[[], bool] = lambda: False,
        report: Callable[[Live], None] | None = None,
        report_every: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Feed until ``until()`` is true (checked at least every second) or forever."""
        wall0 = time.monotonic()
        upcoming: dict[int, int] = {}
        for i, x in enumerate(self.seeded):
            upcoming[i] = next(x.station.slots(max(self.start, x.newest()), math.inf))
        reported = wall0
        while not until():
            now = self.start + (time.monotonic() - wall0) * self.speed
            i = min(upcoming, key=upcoming.__getitem__)
            t = upcoming[i]
            if t > now:
                sleep(min(1.0, (t - now) / self.speed))
            else:
                x = self.seeded[i]
                payload = x.simulator.sample(x.station, t)
                if payload is not None:
                    self.send(x, t, payload)
                upcoming[i] = t + x.station.interval
            if report is not None and time.monotonic() - reported >= report_every:
                report(self)
                reported = time.monotonic()
