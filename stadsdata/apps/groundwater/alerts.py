"""Alerts for a home: water too high under the floor, or rising fast towards it; sent through notifiers.

Two criteria per home (``registry.AlertSettings``):

* **high**: the water is less than ``min_depth`` below the crawlspace floor (default 0.20 m, a common
  Dutch norm for crawlspaces) in ``confirm`` consecutive readings. It ends (hysteresis) only when
  the water is ``hysteresis`` further down again, so a level hovering at the threshold does not
  send a message with every reading.
* **rising**: the level rose at least ``rise_per_day`` m/day over the last ``trend_hours`` (a
  least-squares line), and at that pace reaches the threshold within ``horizon_days``. It ends when
  the rise slows to under half that pace.

An alert is sent once when it starts and once when it ends (``raised``/``cleared``); each message
has a key (home, criterion, start of the episode, state) that a notifier passes on (``Idempotency-Key``
header, e-mail ``Message-ID``), and the state keeps the keys sent, so a run repeated after a crash
sends nothing twice. Messages carry the pseudonymous home id, never the address.
"""

from __future__ import annotations

import bisect
import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from stadsdata.apps.groundwater.levels import Level
from stadsdata.apps.groundwater.registry import Home

Kind = Literal["high", "rising"]
Transition = Literal["raised", "cleared"]


@dataclass(frozen=True)
class AlertEvent:
    home: str
    owner: str
    buurtcode: str
    kind: Kind
    state: Transition
    time: datetime
    """The time of the reading that started or ended the alert."""
    level_nap: float
    depth: float
    threshold: float
    rate_per_day: float | None
    since: datetime
    """When the episode started."""

    @property
    def key(self) -> str:
        return f"{self.home}:{self.kind}:{self.since.astimezone(UTC):%Y%m%dT%H%M%SZ}:{self.state}"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AlertEvent:
        return cls(
            d["home"], d["owner"], d["buurtcode"], d["kind"], d["state"],
            datetime.fromisoformat(d["time"].replace("Z", "+00:00")), d["level_nap"], d["depth"], d["threshold"],
            d["rate_per_day"], datetime.fromisoformat(d["since"].replace("Z", "+00:00")),
        )  # fmt: skip

    def json(self) -> dict[str, Any]:
        d = asdict(self)
        d["time"] = self.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        d["since"] = self.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        d["key"] = self.key
        d["message"] = {"nl": self.text("nl"), "en": self.text("en")}
        return d

    def text(self, lang: str) -> str:
        """The message in plain Dutch (``nl``) or English."""
        cm = round(self.depth * 100)
        limit = round(self.threshold * 100)
        when = self.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        rate = round((self.rate_per_day or 0) * 100)
        if lang == "nl":
            if self.kind == "high" and self.state == "raised":
                return (f"Het grondwater onder uw woning staat hoog: {cm} cm onder de bodem van de kruipruimte "
                        f"(grens: {limit} cm), gemeten {when}.")  # fmt: skip
            if self.kind == "high":
                return f"Het grondwater staat weer lager: {cm} cm onder de bodem van de kruipruimte ({when})."
            if self.state == "raised":
                return (f"Het grondwater onder uw woning stijgt snel: {rate} cm per dag, nu {cm} cm onder de "
                        f"bodem van de kruipruimte ({when}).")  # fmt: skip
            return f"Het grondwater stijgt niet meer snel; nu {cm} cm onder de bodem van de kruipruimte ({when})."
        if self.kind == "high" and self.state == "raised":
            return (f"The groundwater under your home is high: {cm} cm below the crawlspace floor "
                    f"(limit: {limit} cm), measured {when}.")  # fmt: skip
        if self.kind == "high":
            return f"The groundwater is lower again: {cm} cm below the crawlspace floor ({when})."
        if self.state == "raised":
            return (f"The groundwater under your home is rising fast: {rate} cm a day, now {cm} cm below the "
                    f"crawlspace floor ({when}).")  # fmt: skip
        return f"The groundwater no longer rises fast; now {cm} cm below the crawlspace floor ({when})."


@dataclass
class Criterion:
    active: bool = False
    since: str | None = None
    streak: int = 0


@dataclass
class HomeState:
    last: str | None = None
    """The time of the newest reading evaluated."""
    high: Criterion = field(default_factory=Criterion)
    rising: Criterion = field(default_factory=Criterion)


@dataclass
class State:
    """What the alerting remembers between runs: per home the criteria, and the keys of messages sent."""

    homes: dict[str, HomeState] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Events a notifier could not deliver yet, tried again on the next run."""

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text("utf-8"))
        homes = {
            k: HomeState(v.get("last"), Criterion(**v["high"]), Criterion(**v["rising"]))
            for k, v in doc.get("homes", {}).items()
        }
        return cls(homes, list(doc.get("sent", [])), list(doc.get("pending", [])))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        doc = {
            "homes": {k: asdict(v) for k, v in self.homes.items()},
            "sent": self.sent[-5000:],
            "pending": self.pending,
        }
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)


def _slope_per_day(levels: Sequence[Level]) -> float:
    """Least-squares slope of the level (m/day)."""
    t0 = levels[0].time.timestamp()
    xs = [(x.time.timestamp() - t0) / 86_400 for x in levels]
    ys = [x.level_nap for x in levels]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def evaluate(home: Home, levels: Sequence[Level], state: HomeState) -> list[AlertEvent]:
    """The alerts that start or end in ``levels`` (oldest first) after ``state.last``; updates ``state``."""
    a = home.alert
    times = [x.time for x in levels]
    last = datetime.fromisoformat(state.last) if state.last else None
    start = bisect.bisect_right(times, last) if last else 0
    events: list[AlertEvent] = []

    def event(kind: Kind, transition: Transition, x: Level, rate: float | None, since: str) -> AlertEvent:
        return AlertEvent(
            home.id, home.owner, home.buurtcode, kind, transition, x.time, x.level_nap, x.depth, a.min_depth, rate,
            datetime.fromisoformat(since),
        )  # fmt: skip

    for i in range(start, len(levels)):
        x = levels[i]
        high = state.high
        if x.depth < a.min_depth:
            high.streak += 1
            if not high.active and high.streak >= a.confirm:
                high.active, high.since = True, x.time.isoformat()
                events.append(event("high", "raised", x, None, high.since))
        else:
            high.streak = 0
            if high.active and x.depth >= a.min_depth + a.hysteresis:
                assert high.since is not None
                events.append(event("high", "cleared", x, None, high.since))
                high.active, high.since = False, None
        window_start = bisect.bisect_left(times, x.time - timedelta(hours=a.trend_hours), 0, i + 1)
        window = levels[window_start : i + 1]
        span = (window[-1].time - window[0].time).total_seconds() / 3600 if window else 0.0
        rising = state.rising
        if len(window) >= 4 and span >= a.trend_hours / 2:
            rate = _slope_per_day(window)
            reaches = x.depth - rate * a.horizon_days < a.min_depth
            if not rising.active and rate >= a.rise_per_day and reaches and x.depth >= a.min_depth:
                rising.active, rising.since = True, x.time.isoformat()
                events.append(event("rising", "raised", x, rate, rising.since))
            elif rising.active and rate < a.rise_per_day / 2:
                assert rising.since is not None
                events.append(event("rising", "cleared", x, rate, rising.since))
                rising.active, rising.since = False, None
        state.last = x.time.isoformat()
    return events


class Notifier(Protocol):
    """Delivers an alert; raises ``NotifyError`` when it could not (the message is tried again next run)."""

    def send(self, event: AlertEvent) -> None: ...


class NotifyError(RuntimeError):
    pass


class WebhookNotifier:
    """POSTs the event as JSON to a URL (the city's incident system, a chat bridge), with ``Idempotency-Key``."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout

    def send(self, event: AlertEvent) -> None:
        req = urllib.request.Request(
            self.url,
            data=json.dumps(event.json()).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": event.key, **self.headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as e:
            raise NotifyError(f"webhook {self.url}: {e}") from None


class SmtpNotifier:
    """E-mails the resident (the address in the homes file) in Dutch and English, through an SMTP server."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Callable[[str], Iterable[str]],
        starttls: bool = False,
        login: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.recipients = recipients
        self.starttls, self.login, self.timeout = starttls, login, timeout

    def message(self, event: AlertEvent, to: list[str]) -> EmailMessage:
        msg = EmailMessage()
        subjects = {
            ("high", "raised"): "Grondwater hoog onder uw woning / Groundwater high under your home",
            ("high", "cleared"): "Grondwater weer lager / Groundwater lower again",
            ("rising", "raised"): "Grondwater stijgt snel / Groundwater rising fast",
            ("rising", "cleared"): "Grondwater stijgt niet meer snel / Groundwater no longer rising fast",
        }
        msg["Subject"] = subjects[event.kind, event.state]
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = f"<{event.key.replace(':', '.')}@groundwater.stadsdata>"
        msg.set_content(f"{event.text('nl')}\n\n{event.text('en')}\n\n(well {event.home})\n")
        return msg

    def send(self, event: AlertEvent) -> None:
        to = [r for r in self.recipients(event.home) if r]
        if not to:
            return
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.login:
                    smtp.login(*self.login)
                smtp.send_message(self.message(event, to))
        except (smtplib.SMTPException, OSError) as e:
            raise NotifyError(f"SMTP {self.host}:{self.port}: {e}") from None


def deliver(
    events: Iterable[AlertEvent], notifiers: Sequence[Notifier], state: State, save: Callable[[], None]
) -> list[str]:
    """Send each event not sent before through every notifier; returns the problems (the event is tried again
    next run, and a notifier that did deliver it may get it twice then: the key lets the receiver tell)."""
    problems: list[str] = []
    todo = [AlertEvent.from_json(d) for d in state.pending] + list(events)
    state.pending = []
    for e in todo:
        if e.key in state.sent:
            continue
        failed = False
        for n in notifiers:
            try:
                n.send(e)
            except NotifyError as err:
                problems.append(f"{e.key}: {err}")
                failed = True
        if failed:
            state.pending.append(e.json())
        else:
            state.sent.append(e.key)
        save()
    return problems
