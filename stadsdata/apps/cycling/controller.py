"""Traffic-light controllers behind one interface, and the first adapter: a light simulated in SUMO.

``ActuatedController`` is a stage-based, vehicle-actuated controller as Dutch VRIs run them,
in plain Python so that it can be tested without a simulator: each stage has signal groups,
a minimum green, a maximum green (counted from the first conflicting call, so that it bounds
how long a waiting road user waits), a gap time for green extension by upstream detectors,
per-group amber times and an all-red clearance before the next stage. Stage 0 rests in green
when nothing else is called.

Priority requests (``request``/``cancel``, the ``Controller`` protocol of ``requests``) are
granted only within those limits:

* the requested group is green: its green is held until the cyclist's arrival (plus
  ``pass_time``) if that stays within its maximum green plus ``priority_extension``;
  otherwise the request is rejected;
* the requested group is red: the request becomes a call, and the running stage ends so that
  the group turns green ``lead`` seconds before the arrival, but never before the running
  stage's minimum green (nor its ``protected_green``, which bounds what priority may take from
  the main road), and always through its amber and clearance. The answer says when the green
  is expected.

``SumoController`` reads induction loops in SUMO (through libsumo) and sets the signal states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stadsdata.apps.cycling.requests import Decision, PriorityRequest, Status

Phase = Literal["green", "amber", "clearance"]


@dataclass(frozen=True)
class Stage:
    name: str
    groups: tuple[str, ...]
    min_green: float
    max_green: float
    gap: float
    """Green is extended while an extension detector saw a vehicle less than this many seconds ago."""
    clearance: float
    """All-red time after this stage's amber, before the next stage's green."""
    call: tuple[str, ...] = ()
    """Detectors that call this stage when occupied while it is not green."""
    extend: tuple[str, ...] = ()
    """Detectors whose gaps decide when this stage's green may end."""
    protected_green: float = 0.0
    """A priority request for another stage may end this green only after this many seconds (at least the
    minimum green): it bounds how much green priority takes from this stage's road users."""

    @property
    def truncatable_after(self) -> float:
        return max(self.min_green, self.protected_green)


@dataclass(frozen=True)
class SignalPlan:
    stages: tuple[Stage, ...]
    amber: dict[str, float]
    priority_extension: float = 8.0
    """Seconds a priority request may hold a green beyond the stage's maximum green."""
    lead: float = 1.0
    """Aim to show green this many seconds before the cyclist reaches the stop line."""
    pass_time: float = 2.0
    """Hold green this long after the estimated arrival."""

    def stage_of(self, group: str) -> int:
        for i, stage in enumerate(self.stages):
            if group in stage.groups:
                return i
        raise KeyError(f"signal group {group!r} is in no stage of the plan")

    def amber_of(self, stage: int) -> float:
        return max(self.amber.get(g, 3.0) for g in self.stages[stage].groups)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SignalPlan:
        stages = tuple(
            Stage(
                name=str(s["name"]),
                groups=tuple(s["groups"]),
                min_green=float(s["min_green"]),
                max_green=float(s["max_green"]),
                gap=float(s["gap"]),
                clearance=float(s["clearance"]),
                call=tuple(s.get("call", ())),
                extend=tuple(s.get("extend", ())),
                protected_green=float(s.get("protected_green", 0.0)),
            )
            for s in config["stages"]
        )
        return cls(
            stages=stages,
            amber={str(k): float(v) for k, v in config["amber"].items()},
            priority_extension=float(config.get("priority_extension", 8.0)),
            lead=float(config.get("lead", 1.0)),
            pass_time=float(config.get("pass_time", 2.0)),
        )


class Detectors(Protocol):
    def occupied(self, detector: str) -> bool:
        """A vehicle is on the detector now, or passed it during the last step."""
        ...

    def gap(self, detector: str) -> float:
        """Seconds since the detector last saw a vehicle."""
        ...


@dataclass
class _Priority:
    request: PriorityRequest
    stage: int


@dataclass
class ActuatedController:
    """The controller logic; ``step`` is called every simulation step (or every 100 ms on a real controller)."""

    plan: SignalPlan
    stage: int = 0
    phase: Phase = "green"
    phase_start: float = 0.0
    green_start: float = 0.0
    calls: dict[int, float] = field(default_factory=dict)
    """Called stages and since when."""
    priorities: dict[int, _Priority] = field(default_factory=dict)

    def states(self) -> dict[str, str]:
        """Each signal group's state: G (green), y (amber) or r (red)."""
        out = {g: "r" for stage in self.plan.stages for g in stage.groups}
        if self.phase == "green":
            for g in self.plan.stages[self.stage].groups:
                out[g] = "G"
        elif self.phase == "amber":
            for g in self.plan.stages[self.stage].groups:
                # Groups with a shorter amber are red for the rest of the longest amber.
                out[g] = "y"
        return out

    def step(self, now: float, detectors: Detectors) -> dict[str, str]:
        self._latch_calls(now, detectors)
        if self.phase == "green":
            if self._green_ends(now, detectors):
                self.phase, self.phase_start = "amber", now
        elif self.phase == "amber":
            if now - self.phase_start >= self.plan.amber_of(self.stage):
                self.phase, self.phase_start = "clearance", now
        elif now - self.phase_start >= self.plan.stages[self.stage].clearance:
            self.stage = self._next_stage()
            self.phase, self.phase_start, self.green_start = "green", now, now
            self.calls.pop(self.stage, None)
        out = self.states()
        if self.phase == "amber":
            elapsed = now - self.phase_start
            for g in self.plan.stages[self.stage].groups:
                if elapsed >= self.plan.amber.get(g, 3.0):
                    out[g] = "r"
        return out

    def _latch_calls(self, now: float, detectors: Detectors) -> None:
        for i, stage in enumerate(self.plan.stages):
            if i == self.stage and self.phase == "green" or i in self.calls:
                continue
            if any(detectors.occupied(d) for d in stage.call):
                self.calls[i] = now

    def _demand(self) -> dict[int, float]:
        """Stages other than the running one that want green, and since when."""
        demand = {i: t for i, t in self.calls.items() if i != self.stage}
        for p in self.priorities.values():
            if p.stage != self.stage:
                demand[p.stage] = min(demand.get(p.stage, p.request.sent), p.request.sent)
        return demand

    def _green_ends(self, now: float, detectors: Detectors) -> bool:
        stage = self.plan.stages[self.stage]
        elapsed = now - self.green_start
        if elapsed < stage.min_green:
            return False
        if any(
            p.stage == self.stage and p.request.eta + self.plan.pass_time > now for p in self.priorities.values()
        ) and (elapsed < stage.max_green + self.plan.priority_extension):
            return False
        demand = self._demand()
        if not demand:
            return False
        since = max(self.green_start, min(demand.values()))
        if now - since >= stage.max_green:
            return True
        planned = [
            p.request.eta - self.plan.lead - self.plan.amber_of(self.stage) - stage.clearance
            for p in self.priorities.values()
            if p.stage != self.stage
        ]
        if planned and now >= min(planned) and elapsed >= stage.truncatable_after:
            return True
        return all(detectors.gap(d) >= stage.gap for d in stage.extend)

    def _next_stage(self) -> int:
        demand = self._demand() | {i: t for i, t in self.calls.items()}
        n = len(self.plan.stages)
        for k in range(1, n + 1):
            candidate = (self.stage + k) % n
            if candidate in demand and candidate != self.stage:
                return candidate
        return 0 if self.stage != 0 or 0 in demand else self.stage

    def earliest_green(self, target: int, now: float) -> float:
        """The earliest time stage ``target`` can be green, keeping every minimum green, amber and clearance."""
        n = len(self.plan.stages)
        current = self.plan.stages[self.stage]
        if self.phase == "green":
            if self.stage == target:
                return now
            t = max(now, self.green_start + current.truncatable_after) + self.plan.amber_of(self.stage)
            t += current.clearance
        elif self.phase == "amber":
            t = self.phase_start + self.plan.amber_of(self.stage) + current.clearance
        else:
            t = self.phase_start + current.clearance
        demand = self._demand()
        k = (self.stage + 1) % n
        while k != target:
            # Stages in between that will run first (stage 0, the rest stage, always does), each for as long as a
            # priority request may shorten it to.
            if k in demand or k in self.calls or k == 0:
                between = self.plan.stages[k]
                t += between.truncatable_after + self.plan.amber_of(k) + between.clearance
            k = (k + 1) % n
        return max(t, now)

    def request(self, request: PriorityRequest, now: float) -> Decision:
        try:
            target = self.plan.stage_of(request.signal_group)
        except KeyError as e:
            return Decision(Status.REJECTED, reason=str(e))
        stage = self.plan.stages[target]
        if self.stage == target and self.phase == "green":
            hold_until = request.eta + self.plan.pass_time
            if hold_until - self.green_start > stage.max_green + self.plan.priority_extension:
                self.priorities.pop(request.request_id, None)
                return Decision(Status.REJECTED, reason="holding green until arrival would exceed its maximum green")
            self.priorities[request.request_id] = _Priority(request, target)
            return Decision(Status.GRANTED, green_at=now, reason="green held until arrival")
        green_at = max(self.earliest_green(target, now), request.eta - self.plan.lead)
        self.priorities[request.request_id] = _Priority(request, target)
        return Decision(Status.GRANTED, green_at=green_at, reason="conflicting green ends within its limits")

    def cancel(self, request: PriorityRequest, now: float) -> None:
        self.priorities.pop(request.request_id, None)


class SumoController:
    """The controller adapter for a traffic light simulated in SUMO, driven through libsumo.

    ``groups`` maps each signal group to the SUMO lanes it controls; links from ``permissive`` lanes
    are shown as a yielding green (SUMO's ``g``: turning traffic that gives way to crossing cyclists).
    """

    def __init__(
        self,
        sumo: Any,
        tls: str,
        plan: SignalPlan,
        groups: dict[str, list[str]],
        permissive: set[str] | None = None,
    ) -> None:
        self.sumo = sumo
        self.tls = tls
        self.logic = ActuatedController(plan)
        lane_group = {lane: g for g, lanes in groups.items() for lane in lanes}
        permissive = permissive or set()
        self._links: list[tuple[str | None, str]] = []
        for links in sumo.trafficlight.getControlledLinks(tls):
            lane = links[0][0] if links else ""
            self._links.append((lane_group.get(lane), "g" if lane in permissive else "G"))
        self._state = ""

    def occupied(self, detector: str) -> bool:
        return bool(self.sumo.inductionloop.getLastStepVehicleNumber(detector) > 0)

    def gap(self, detector: str) -> float:
        return float(self.sumo.inductionloop.getTimeSinceDetection(detector))

    def step(self, now: float) -> None:
        groups = self.logic.step(now, self)
        state = "".join(
            "r" if group is None else (green if groups[group] == "G" else groups[group]) for group, green in self._links
        )
        if state != self._state:
            self.sumo.trafficlight.setRedYellowGreenState(self.tls, state)
            self._state = state

    def request(self, request: PriorityRequest, now: float) -> Decision:
        return self.logic.request(request, now)

    def cancel(self, request: PriorityRequest, now: float) -> None:
        self.logic.cancel(request, now)
