"""The priority service running live on the platform: positions in over MQTT, requests out over HTTP.

The app on a cyclist's phone creates Observations of an intersection's "cyclist positions"
Datastream, by publishing them to ``v1.1/Datastreams(<id>)/Observations`` with MQTT QoS 1 or by
POSTing them; their result is a position report (``messages.fix_from_json``). This service
subscribes to the notifications of those Datastreams (each one the Observation as ``GET`` returns
it), feeds the reports to a ``PriorityService`` per intersection, hands its requests to a
controller adapter, and writes every SRM-like request and SSM-like answer or status change as an
Observation of the signal group's "priority requests" Datastream, over HTTP.

Positions are short-lived: every ``retention_every`` seconds the service deletes the position
Observations whose phenomenonTime is older than ``retention`` seconds, through the API. Log lines
name requests, signal groups and Datastreams, never a pseudonym or a position.

``SimulatedController`` is the controller adapter for live use without a real traffic light: the
pure-Python ``ActuatedController`` running the scenario's signal plan on the wall clock, with no
detectors (so only priority requests call the cycle stage). It answers requests as the real
controller would within that plan; it switches no lamp anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiomqtt

from stadsdata.apps.cycling.controller import ActuatedController, SignalPlan
from stadsdata.apps.cycling.eta import Fix
from stadsdata.apps.cycling.messages import MessageError, fix_from_json, srm_json, ssm_json
from stadsdata.apps.cycling.platform import POSITIONS, REQUESTS, PlatformError, Transport
from stadsdata.apps.cycling.requests import (
    Controller,
    Decision,
    Event,
    PriorityRequest,
    PriorityService,
    ServiceSettings,
    Status,
)
from stadsdata.apps.cycling.topology import Intersection, TopologyError, parse

log = logging.getLogger("stadsdata.cycling.live")

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
MAX_AGE = 10.0
"""Reports whose own time is further than this from the service's clock are ignored (a phone with a wrong clock,
or a message redelivered long after it was sent: a request from it would be for a cyclist who is elsewhere now)."""
MAX_ACCURACY = 30.0
"""Reports whose phone says its position may be further off than this (metres) are ignored."""
TICK = 0.2
"""Seconds between steps of the controller and sweeps of silent cyclists."""


class LiveController(Controller, Protocol):
    """A controller adapter for live use: the ``Controller`` interface, stepped on the wall clock."""

    label: str

    def tick(self, now: float) -> None:
        """Advance the controller to ``now`` (seconds since the epoch)."""
        ...


class _NoDetectors:
    def occupied(self, detector: str) -> bool:
        return False

    def gap(self, detector: str) -> float:
        return math.inf


class SimulatedController:
    """A **simulated** controller: ``ActuatedController`` on the wall clock, without detectors and without lamps.

    It runs the signal plan as the real controller would and answers priority requests within the plan's limits,
    so that the chain app → platform → service → controller → answer can run and be watched end to end; no traffic
    light is switched. Times are seconds since the epoch.
    """

    label = "simulated"

    def __init__(self, plan: SignalPlan, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # The rest stage (0) has been green long enough that a request may end it (as at a junction whose
        # main road has had green for a while).
        since = clock() - plan.stages[0].truncatable_after
        self.logic = ActuatedController(plan, phase_start=since, green_start=since)
        self.states = self.logic.states()
        self._detectors = _NoDetectors()

    def tick(self, now: float) -> None:
        self.states = self.logic.step(max(now, self.logic.phase_start), self._detectors)

    def request(self, request: PriorityRequest, now: float) -> Decision:
        now = self.clock()
        self.tick(now)
        return self.logic.request(request, now)

    def cancel(self, request: PriorityRequest, now: float) -> None:
        self.logic.cancel(request, self.clock())


@dataclass
class Site:
    """One intersection served live: its Datastreams on the platform, its service and its controller."""

    intersection: Intersection
    thing: int
    positions: int
    requests: dict[str, int]
    """Signal group → the id of its priority requests Datastream."""
    service: PriorityService
    controller: LiveController

    @property
    def topic(self) -> str:
        return f"v1.1/Datastreams({self.positions})/Observations"


class SetupError(RuntimeError):
    """The platform holds no intersection to serve, or one without its Datastreams."""


def discover(
    send: Transport,
    wanted: Iterable[str],
    controller_for: Callable[[Intersection], LiveController],
    settings: ServiceSettings,
) -> list[Site]:
    """The intersections stored on the platform (``intersections load``), or those whose id or name is in
    ``wanted``; each with its Datastreams, a ``PriorityService`` and a controller."""
    wanted = set(wanted)
    flt = urllib.parse.quote("properties/kind eq 'signalised intersection'")
    path: str | None = f"Things?$filter={flt}&$expand=Datastreams($select=id,name,properties)&$top=100"
    things: list[dict[str, Any]] = []
    while path:
        page = send("GET", path, None)
        things += page.get("value", [])
        link = page.get("@iot.nextLink")
        path = link.split("/v1.1/", 1)[1] if isinstance(link, str) and "/v1.1/" in link else None
    sites: list[Site] = []
    for thing in things:
        try:
            intersection = parse(thing.get("properties", {}).get("topology"))
        except TopologyError as e:
            log.warning("Thing %s: its topology cannot be used: %s", thing.get("@iot.id"), e)
            continue
        if wanted and intersection.id not in wanted and intersection.name not in wanted:
            continue
        streams = thing.get("Datastreams", [])
        positions = [d for d in streams if (d.get("properties") or {}).get("kind") == POSITIONS]
        requests = {
            str(d["properties"]["signal_group"]): int(d["@iot.id"])
            for d in streams
            if (d.get("properties") or {}).get("signal_group") is not None and REQUESTS in str(d.get("name"))
        }
        if not positions:
            raise SetupError(
                f"{intersection.id} has no cyclist positions Datastream: load it again with "
                "stadsdata cycling intersections load"
            )
        controller = controller_for(intersection)
        service = PriorityService(intersection, controller, settings)
        sites.append(Site(intersection, int(thing["@iot.id"]), int(positions[0]["@iot.id"]), requests, service,
                          controller))  # fmt: skip
    if not sites:
        which = f" named {', '.join(sorted(wanted))}" if wanted else ""
        raise SetupError(f"no intersection{which} on the platform: store one with stadsdata cycling intersections load")
    return sites


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_from_notification(doc: Any) -> Fix:
    """The position report in a notification: an Observation (as GET returns it) whose result is the report.
    A report without ``time`` takes the Observation's phenomenonTime."""
    if not isinstance(doc, dict) or "@iot.id" not in doc:
        # On an external broker, subscribers also get the device's own message before the server's
        # notification of the created Observation; only the notification is used.
        raise MessageError("not a notification of a created Observation")
    result = doc.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            raise MessageError("the result is not a position report") from None
    if isinstance(result, dict) and result.get("time") is None and isinstance(doc.get("phenomenonTime"), str):
        result = {**result, "time": doc["phenomenonTime"].split("/")[0]}
    return fix_from_json(result)


def messages_for(event: Event) -> list[dict[str, Any]]:
    """The SRM- or SSM-like result(s) written for one event of the service."""
    request = event.request
    if request.status is Status.REQUESTED:
        srm = srm_json(request)
        srm.update(eta=iso(request.eta), secondsToArrival=round(request.eta - request.sent, 1), sent=iso(request.sent))
        return [{"message": "SRM", **srm}]
    decision = event.decision or Decision(request.status, reason=event.reason)
    ssm = ssm_json(request, decision)
    if ssm["expectedGreen"] is not None:
        ssm["expectedGreen"] = iso(ssm["expectedGreen"])
    return [{"message": "SSM", **ssm, "eta": iso(request.eta)}]


@dataclass
class LiveService:
    """The long-running service: one MQTT subscription for every site's positions, a writer, a ticker, retention."""

    sites: list[Site]
    send: Transport
    mqtt_url: str
    retention: float = 600.0
    """Seconds a position Observation is kept (by its phenomenonTime)."""
    retention_every: float = 60.0
    clock: Callable[[], float] = time.time
    max_age: float = MAX_AGE
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    written: int = 0
    deleted: int = 0
    _queue: asyncio.Queue[tuple[int, float, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    _by_stream: dict[int, Site] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_stream = {s.positions: s for s in self.sites}

    async def run(self) -> None:
        """Run until cancelled."""
        tasks = [
            asyncio.create_task(self._subscribe(), name="cycling-mqtt"),
            asyncio.create_task(self._write(), name="cycling-writer"),
            asyncio.create_task(self._tick(), name="cycling-ticker"),
            asyncio.create_task(self._retain(), name="cycling-retention"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- positions in ------------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        parts = urlsplit(self.mqtt_url)
        return aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=f"stadsdata-cycling-{secrets.token_hex(4)}",
            tls_context=ssl.create_default_context() if parts.scheme == "mqtts" else None,
        )

    async def _subscribe(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe([(s.topic, 1) for s in self.sites])
                    self.connected.set()
                    attempt = 0
                    log.info("subscribed to the positions of %d intersection(s)", len(self.sites))
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray | str):
                            self.handle(str(message.topic), payload)
            except aiomqtt.MqttError as e:
                problem = str(e)
            finally:
                self.connected.clear()
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            log.warning("MQTT broker connection lost (%s); reconnecting in %.1f s", problem, delay)
            await asyncio.sleep(delay)

    def handle(self, topic: str, payload: bytes | bytearray | str) -> None:
        """One notification on a positions topic."""
        site = next((s for s in self.sites if s.topic == topic), None)
        if site is None:
            return
        try:
            fix = report_from_notification(json.loads(payload))
        except (ValueError, MessageError) as e:
            log.debug("position report on %s not used: %s", topic, e)
            return
        now = self.clock()
        if abs(now - fix.time) > self.max_age:
            log.debug("position report on %s not used: %.0f s away from the service's clock", topic, fix.time - now)
            return
        if fix.accuracy is not None and fix.accuracy > MAX_ACCURACY:
            return
        site.service.observe(fix)
        self._drain(site)

    # -- requests out ------------------------------------------------------------------------------

    def _drain(self, site: Site) -> None:
        events = list(site.service.events)
        site.service.events.clear()
        for event in events:
            r = event.request
            if r.status is not Status.REQUESTED:
                log.info(
                    "%s request %d seq %d, signal group %s (%s): %s%s, ETA in %.1f s",
                    site.intersection.id, r.request_id, r.sequence, r.signal_group, r.approach, r.status.value,
                    f" ({event.reason})" if event.reason else "", r.eta - event.time,
                )  # fmt: skip
            stream = site.requests.get(r.signal_group)
            if stream is None:
                log.warning("%s has no priority requests Datastream for signal group %s", site.intersection.id,
                            r.signal_group)  # fmt: skip
                continue
            for result in messages_for(event):
                self._queue.put_nowait((stream, event.time, result))

    async def _write(self) -> None:
        while True:
            stream, when, result = await self._queue.get()
            body = {"phenomenonTime": iso(when), "result": result}
            for attempt in range(4):
                try:
                    await asyncio.to_thread(self.send, "POST", f"Datastreams({stream})/Observations", body)
                    self.written += 1
                    break
                except PlatformError as e:
                    if attempt == 3:
                        log.warning("a %s for Datastream %d was not stored: %s", result["message"], stream, e)
                    else:
                        await asyncio.sleep(RECONNECT_DELAYS[attempt])
            self._queue.task_done()

    async def idle(self) -> None:
        """Wait until every request and status so far has been written."""
        await self._queue.join()

    async def _tick(self) -> None:
        while True:
            now = self.clock()
            for site in self.sites:
                site.controller.tick(now)
                site.service.sweep(now)
                self._drain(site)
            await asyncio.sleep(TICK)

    # -- retention ---------------------------------------------------------------------------------

    async def _retain(self) -> None:
        while True:
            try:
                n = await asyncio.to_thread(self.delete_old)
                if n:
                    log.info("deleted %d position reports older than %.0f min", n, self.retention / 60)
            except PlatformError as e:
                log.warning("old position reports not deleted: %s", e)
            await asyncio.sleep(self.retention_every)

    def delete_old(self) -> int:
        """Delete the position Observations older than the retention (by phenomenonTime); returns how many."""
        before = iso(self.clock() - self.retention)
        total = 0
        for site in self.sites:
            flt = urllib.parse.quote(f"phenomenonTime lt {before}")
            while True:
                page = self.send(
                    "GET", f"Datastreams({site.positions})/Observations?$filter={flt}&$select=id&$top=500", None
                )
                ids = [int(o["@iot.id"]) for o in page.get("value", [])]
                if not ids:
                    break
                batch = {"requests": [{"id": str(i), "method": "DELETE", "url": f"Observations({i})"} for i in ids]}
                answer = self.send("POST", "$batch", batch)
                failed = [r for r in answer.get("responses", []) if int(r.get("status", 500)) >= 400]
                gone = len(ids) - len(failed)
                total += gone
                self.deleted += gone
                if failed and not gone:
                    raise PlatformError(f"deleting position reports failed: {failed[0]}")
        return total


def build_controllers(kind: str, scenario: str | None, clock: Callable[[], float] = time.time
                      ) -> Callable[[Intersection], LiveController]:  # fmt: skip
    """A factory of controller adapters: ``simulated`` runs the signal plan of ``scenario`` (a bundled scenario or a
    directory; by default the bundled scenario whose intersection has the same id)."""
    from stadsdata.apps.cycling.simulation import SCENARIOS, Scenario, bundled, load_scenario

    def plan_for(intersection: Intersection) -> Scenario:
        if scenario is not None:
            return load_scenario(scenario)
        for name in bundled():
            s = load_scenario(SCENARIOS / name)
            with contextlib.suppress(TopologyError, OSError):
                if s.intersection.id == intersection.id:
                    return s
        raise SetupError(f"no signal plan for {intersection.id}: give a scenario with --scenario")

    def make(intersection: Intersection) -> LiveController:
        if kind == "simulated":
            return SimulatedController(plan_for(intersection).plan, clock)
        raise SetupError(f"unknown controller {kind!r}")

    return make
