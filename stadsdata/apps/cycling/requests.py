"""Priority requests: from a cyclist's positions to SRM-like requests and SSM-like answers.

The fields follow the signal request (SRM) and signal status (SSM) messages of the Dutch
iVRI chain: a request id per intersection, the ingress approach and lane, the signal group,
the estimated time of arrival at the stop line, and the status the controller gives it.

Lifecycle of one request (one cyclist, one approach)::

    (none) --ETA inside window--> requested --controller--> granted | rejected
    granted | rejected --ETA changed, or rejected a while ago--> (sent again, same id) --> granted | rejected
    granted | rejected --passed the stop line--> served
    granted | rejected --stopped, turned away, left the window, or went silent--> cancelled

Positions are pseudonymous (the app's station id changes per trip) and short-lived: a
tracker is forgotten when its cyclist passes, turns away or goes silent, and nothing is
stored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Protocol

from stadsdata.apps.cycling.eta import ArrivalEstimator, Estimate, Fix, LaneMatcher, Match
from stadsdata.apps.cycling.topology import Intersection


class Status(enum.Enum):
    REQUESTED = "requested"
    GRANTED = "granted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    SERVED = "served"

    @property
    def active(self) -> bool:
        return self in (Status.REQUESTED, Status.GRANTED, Status.REJECTED)


@dataclass(frozen=True)
class PriorityRequest:
    """An SRM-like request: ``eta`` is the absolute arrival time (seconds on the controller's clock)."""

    request_id: int
    intersection: str
    approach: str
    lane: str
    signal_group: str
    eta: float
    sent: float
    status: Status = Status.REQUESTED
    sequence: int = 0
    """How often this request was sent (0 the first time); an SRM update keeps its request id."""


@dataclass(frozen=True)
class Decision:
    """An SSM-like answer: granted or rejected, when the group is expected to be green, and why."""

    status: Status
    green_at: float | None = None
    reason: str = ""


class Controller(Protocol):
    """A traffic-light controller that takes priority requests. Adapters drive a real or simulated controller."""

    def request(self, request: PriorityRequest, now: float) -> Decision:
        """Decide on a new or updated request: grant it only when that is safe and within the plan's limits."""
        ...

    def cancel(self, request: PriorityRequest, now: float) -> None:
        """Withdraw a request (the cyclist passed, stopped or turned away)."""
        ...


@dataclass(frozen=True)
class Event:
    """Something that happened to a request, for logs and statistics."""

    time: float
    request: PriorityRequest
    reason: str = ""
    decision: Decision | None = None
    """The controller's answer, on the event of a granted or rejected request."""


@dataclass
class _Tracker:
    match: Match
    estimator: ArrivalEstimator
    last_seen: float
    estimate: Estimate | None = None
    request: PriorityRequest | None = None


@dataclass
class ServiceSettings:
    window: float = 20.0
    """Send a request when the estimated arrival is at most this many seconds away."""
    hysteresis: float = 5.0
    """Cancel only when the ETA leaves the window by more than this (avoids request/cancel flapping)."""
    update_threshold: float = 1.5
    """Send the request again (an update) when its ETA moved by at least this many seconds."""
    silence: float = 5.0
    """Cancel when no position came for this many seconds."""
    retry: float = 2.0
    """Send a rejected request again after this many seconds: the controller may grant it once its green has ended."""


@dataclass
class PriorityService:
    """Turns position reports into priority requests for one intersection and its controller."""

    intersection: Intersection
    controller: Controller
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    matcher: LaneMatcher | None = None
    events: list[Event] = field(default_factory=list)
    _trackers: dict[str, _Tracker] = field(default_factory=dict, init=False)
    _next_id: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        if self.matcher is None:
            self.matcher = LaneMatcher(self.intersection)

    @property
    def active(self) -> list[PriorityRequest]:
        return [t.request for t in self._trackers.values() if t.request is not None and t.request.status.active]

    def observe(self, fix: Fix) -> PriorityRequest | None:
        """Take one position report; returns the cyclist's request as it stands afterwards, if any."""
        assert self.matcher is not None
        tracker = self._trackers.get(fix.station)
        match = self.matcher.match(fix)
        if match is None:
            if tracker is not None:
                self._end(fix.station, fix.time, Status.CANCELLED, "turned away")
            return None
        if tracker is None or tracker.match.lane.id != match.lane.id:
            if tracker is not None:
                self._end(fix.station, fix.time, Status.CANCELLED, "changed lane")
            tracker = _Tracker(match, ArrivalEstimator(), fix.time)
            self._trackers[fix.station] = tracker
        tracker.match = match
        tracker.last_seen = fix.time
        estimate = tracker.estimator.update(fix.time, match.distance, fix.speed)
        tracker.estimate = estimate
        if match.distance < 0:
            if tracker.request is not None:
                return self._end(fix.station, fix.time, Status.SERVED, "passed the stop line")
            # Past the line without a request: nothing more to do for this cyclist here.
            return None
        if estimate.stopped:
            if tracker.request is not None:
                return self._end(fix.station, fix.time, Status.CANCELLED, "stopped")
            return None
        eta = estimate.eta
        assert eta is not None
        if tracker.request is None:
            if eta <= self.settings.window:
                return self._send(tracker, fix.time, fix.time + eta)
            return None
        if eta > self.settings.window + self.settings.hysteresis:
            return self._end(fix.station, fix.time, Status.CANCELLED, "left the request window")
        moved = abs(fix.time + eta - tracker.request.eta) >= self.settings.update_threshold
        retry = tracker.request.status is Status.REJECTED and fix.time - tracker.request.sent >= self.settings.retry
        if moved or retry:
            return self._send(tracker, fix.time, fix.time + eta)
        return tracker.request

    def sweep(self, now: float) -> None:
        """Cancel the requests of cyclists who went silent, and forget them."""
        for station, tracker in list(self._trackers.items()):
            if now - tracker.last_seen > self.settings.silence:
                if tracker.request is not None:
                    self._end(station, now, Status.CANCELLED, "no position reports")
                else:
                    del self._trackers[station]

    def _send(self, tracker: _Tracker, now: float, eta: float) -> PriorityRequest:
        previous = tracker.request
        if previous is None:
            request = PriorityRequest(
                request_id=self._next_id,
                intersection=self.intersection.id,
                approach=tracker.match.approach.id,
                lane=tracker.match.lane.id,
                signal_group=tracker.match.lane.signal_group,
                eta=eta,
                sent=now,
            )
            self._next_id += 1
        else:
            request = replace(previous, eta=eta, sent=now, sequence=previous.sequence + 1, status=Status.REQUESTED)
        self.events.append(Event(now, request))
        decision = self.controller.request(request, now)
        request = replace(request, status=decision.status)
        tracker.request = request
        self.events.append(Event(now, request, decision.reason, decision))
        return request

    def _end(self, station: str, now: float, status: Status, reason: str) -> PriorityRequest | None:
        tracker = self._trackers.pop(station)
        if tracker.request is None:
            return None
        self.controller.cancel(tracker.request, now)
        request = replace(tracker.request, status=status)
        self.events.append(Event(now, request, reason))
        return request
