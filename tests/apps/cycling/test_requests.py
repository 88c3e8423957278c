"""The request lifecycle: requested, granted or rejected, updated, served or cancelled."""

from __future__ import annotations

import random

from stadsdata.apps.cycling.controller import ActuatedController, SignalPlan
from stadsdata.apps.cycling.requests import PriorityService, ServiceSettings, Status
from stadsdata.apps.cycling.topology import Intersection

from .conftest import fix_at
from .test_controller import PLAN

LANE = "south-cycle-0"


def service(intersection: Intersection, window: float = 20.0, plan: SignalPlan = PLAN) -> PriorityService:
    return PriorityService(intersection, ActuatedController(plan), ServiceSettings(window=window))


def ride(svc: PriorityService, intersection: Intersection, start: float, speed: float, t0: float, seconds: int,
         station: str = "p1", noise: float = 0.0, seed: int = 1) -> list:  # fmt: skip
    rng = random.Random(seed)
    out = []
    for k in range(seconds):
        distance = start - speed * k
        out.append(svc.observe(fix_at(intersection, LANE, distance, t0 + k, speed, station, noise, rng)))
    return out


def test_request_sent_inside_window_updated_then_served(intersection: Intersection) -> None:
    svc = service(intersection)
    # 150 m at 5 m/s: the ETA is 30 s at first, inside the 20 s window from 50 m... 100 m out.
    states = ride(svc, intersection, 150.0, 5.0, 100.0, 34, noise=3.0)
    first = next(k for k, r in enumerate(states) if r is not None)
    assert 8 <= first <= 14  # distance 150 - 5k must be about 100 m (20 s) for the first request
    sent = [r for r in states if r is not None]
    assert {r.request_id for r in sent} == {1}  # updates keep the request id
    assert all(r.signal_group == "22" and r.approach == "south" and r.lane == LANE for r in sent)
    assert sent[0].status is Status.GRANTED
    assert abs(sent[0].eta - (100 + first + (150 - 5 * first) / 5)) < 4
    assert sent[-1].status is Status.SERVED
    assert not svc.active
    assert not svc.controller.priorities  # type: ignore[attr-defined]
    statuses = [e.request.status for e in svc.events]
    assert statuses[0] is Status.REQUESTED and statuses[-1] is Status.SERVED


def test_stopping_cancels(intersection: Intersection) -> None:
    svc = service(intersection)
    ride(svc, intersection, 90.0, 5.0, 0.0, 15)  # to 20 m before the stop line
    assert svc.active and svc.active[0].status is Status.GRANTED
    answers = [svc.observe(fix_at(intersection, LANE, 16.0, 15.0 + k, 0.0, "p1")) for k in range(6)]
    statuses = [r.status for r in answers if r is not None]
    assert statuses[-1] is Status.CANCELLED and statuses.count(Status.CANCELLED) == 1  # once, then forgotten
    assert svc.events[-1].reason == "stopped"
    assert not svc.controller.priorities  # type: ignore[attr-defined]


def test_turning_away_cancels(intersection: Intersection) -> None:
    svc = service(intersection)
    ride(svc, intersection, 90.0, 5.0, 0.0, 6)
    assert svc.active
    here = fix_at(intersection, LANE, 60.0, 6.0, 5.0, "p1")
    assert here.heading is not None
    # Riding off sideways (a turn into a side street): heading 90 degrees off the lane.
    assert svc.observe(fix_at(intersection, LANE, 60.0, 6.0, 5.0, "p1", heading=(here.heading + 90) % 360)) is None
    assert svc.events[-1].request.status is Status.CANCELLED and svc.events[-1].reason == "turned away"
    assert not svc.active


def test_silence_cancels_and_forgets(intersection: Intersection) -> None:
    svc = service(intersection)
    ride(svc, intersection, 90.0, 5.0, 0.0, 6)
    assert svc.active
    svc.sweep(20.0)
    assert not svc.active and svc.events[-1].reason == "no position reports"
    assert not svc._trackers  # nothing is kept about the cyclist


def test_outside_window_no_request(intersection: Intersection) -> None:
    svc = service(intersection, window=5.0)
    states = ride(svc, intersection, 140.0, 5.0, 0.0, 20)
    assert all(r is None for r in states)  # still 40 m (8 s) out


def test_two_cyclists_get_their_own_requests(intersection: Intersection) -> None:
    svc = service(intersection)
    ride(svc, intersection, 80.0, 5.0, 0.0, 3, station="one")
    ride(svc, intersection, 70.0, 4.0, 0.0, 3, station="two")
    assert sorted(r.request_id for r in svc.active) == [1, 2]
