"""The actuated controller's limits, and what it does with priority requests."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stadsdata.apps.cycling.controller import ActuatedController, SignalPlan, Stage
from stadsdata.apps.cycling.requests import PriorityRequest, Status

MAIN = Stage("main", ("02", "08"), min_green=8, max_green=40, gap=3, clearance=2, call=("m",), extend=("mu",),
             protected_green=15)  # fmt: skip
SIDE = Stage("side", ("11", "22"), min_green=6, max_green=20, gap=2.5, clearance=4, call=("s", "b"), extend=("s",))
PLAN = SignalPlan((MAIN, SIDE), {"02": 3.5, "08": 3.5, "11": 3.0, "22": 2.5}, priority_extension=8, lead=1, pass_time=2)
STEP = 0.5


@dataclass
class Loops:
    """Detector readings set by the test: occupied loops, and when each loop last saw a vehicle."""

    on: set[str] = field(default_factory=set)
    last: dict[str, float] = field(default_factory=dict)
    now: float = 0.0

    def occupied(self, detector: str) -> bool:
        return detector in self.on

    def gap(self, detector: str) -> float:
        return self.now - self.last.get(detector, -1e9)


def run(
    c: ActuatedController, loops: Loops, start: float, end: float, busy_main: bool = False
) -> list[tuple[float, dict[str, str]]]:
    """Step the controller; ``busy_main``: main-road traffic passes the extension loop every step."""
    out = []
    t = start
    while t < end:
        loops.now = t
        if busy_main:
            loops.last["mu"] = t
        out.append((t, c.step(t, loops)))
        t += STEP
    return out


def green_spans(trace: list[tuple[float, dict[str, str]]], group: str) -> list[tuple[float, float]]:
    spans, start = [], None
    for t, states in trace:
        if states[group] == "G" and start is None:
            start = t
        if states[group] != "G" and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, trace[-1][0] + STEP))
    return spans


def request(group: str, eta: float, sent: float, rid: int = 1) -> PriorityRequest:
    return PriorityRequest(rid, "x", "south", "south-cycle-0", group, eta=eta, sent=sent)


def test_rests_in_main_green_without_demand() -> None:
    trace = run(ActuatedController(PLAN), Loops(), 0, 120)
    assert all(s["02"] == "G" and s["22"] == "r" for _, s in trace)


def test_call_is_served_after_min_green_amber_and_clearance() -> None:
    c, loops = ActuatedController(PLAN), Loops(on={"b", "m"})
    trace = run(c, loops, 0, 40)
    (main_end, side) = green_spans(trace, "02")[0][1], green_spans(trace, "22")[0]
    assert main_end == pytest.approx(8.0)  # minimum green, no traffic on the main road to extend it
    assert side[0] == pytest.approx(main_end + 3.5 + 2.0)  # amber, then all-red clearance
    assert side[1] - side[0] == pytest.approx(6.0)  # minimum green, nothing extends it


def test_amber_per_group_and_never_green_together() -> None:
    c, loops = ActuatedController(PLAN), Loops(on={"b", "m"})
    trace = run(c, loops, 0, 200)
    for _, s in trace:
        assert not ({s["02"], s["08"]} & {"G", "y"} and {s["11"], s["22"]} & {"G", "y"})
    ambers = [t for t, s in trace if s["22"] == "y"]
    first = ambers[0]
    assert [t for t in ambers if t < first + 10][-1] - first == pytest.approx(2.5 - STEP)


def test_maximum_green_bounds_the_wait() -> None:
    c, loops = ActuatedController(PLAN), Loops()
    # Main road traffic keeps extending; a cyclist calls at t=20.
    trace = []
    for k in range(int(120 / STEP)):
        t = k * STEP
        loops.last["mu"] = t
        loops.on = {"b"} if t >= 20 else set()
        loops.now = t
        trace.append((t, c.step(t, loops)))
    assert green_spans(trace, "02")[0][1] == pytest.approx(20 + 40)


def test_priority_ends_main_green_for_the_arrival_but_not_before_its_protected_green() -> None:
    c, loops = ActuatedController(PLAN), Loops()
    run(c, loops, 0, 30, busy_main=True)  # main green since 0, past its protected 15 s
    decision = c.request(request("22", eta=50.0, sent=30.0), 30.0)
    assert decision.status is Status.GRANTED
    assert decision.green_at == pytest.approx(49.0)  # lead of 1 s before arrival
    trace = run(c, loops, 30, 70, busy_main=True)
    assert green_spans(trace, "22")[0][0] == pytest.approx(49.0)

    early = ActuatedController(PLAN)
    run(early, Loops(), 0, 2)
    decision = early.request(request("22", eta=4.0, sent=2.0), 2.0)
    assert decision.status is Status.GRANTED
    assert decision.green_at == pytest.approx(15 + 3.5 + 2)  # not before main's protected 15 s, amber, clearance


def test_priority_holds_green_until_arrival_within_the_maximum() -> None:
    c, loops = ActuatedController(PLAN), Loops(on={"b"})
    run(c, loops, 0, 14)  # side green from 13.5
    loops.on = {"m"}
    start = c.green_start
    assert c.stage == 1 and c.phase == "green"
    ok = c.request(request("22", eta=start + 15, sent=14.0), 14.0)
    assert ok.status is Status.GRANTED
    trace = run(c, loops, 14, 60)
    assert green_spans(trace, "22")[0][1] == pytest.approx(start + 15 + 2)  # held until arrival + pass time
    # A request that would hold the green past max green + priority extension is rejected.
    c2 = ActuatedController(PLAN)
    run(c2, Loops(on={"b"}), 0, 14)
    late = c2.request(request("22", eta=c2.green_start + 27, sent=14.0), 14.0)
    assert late.status is Status.REJECTED and "maximum" in late.reason


def test_cancel_withdraws_the_call() -> None:
    c, loops = ActuatedController(PLAN), Loops()
    run(c, loops, 0, 30)
    r = request("22", eta=45.0, sent=30.0)
    c.request(r, 30.0)
    c.cancel(r, 31.0)
    trace = run(c, loops, 31, 80)
    assert all(s["02"] == "G" for _, s in trace)


def test_request_while_its_green_ends_waits_for_the_next_cycle() -> None:
    c, loops = ActuatedController(PLAN), Loops(on={"b", "m"})
    trace = run(c, loops, 0, 40)
    amber_start = next(t for t, s in trace if s["22"] == "y")
    c2, loops2 = ActuatedController(PLAN), Loops(on={"b", "m"})
    run(c2, loops2, 0, amber_start + STEP)
    assert c2.phase == "amber" and c2.stage == 1
    decision = c2.request(request("22", eta=amber_start + 3, sent=amber_start), amber_start + STEP)
    assert decision.status is Status.GRANTED
    # Never back to green from amber: first the side's amber and clearance, the main road's protected green,
    # its amber and clearance.
    assert decision.green_at == pytest.approx(amber_start + 3.0 + 4.0 + 15.0 + 3.5 + 2.0)
