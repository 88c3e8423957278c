"""The JSON shapes on the wire: the app's position report in, SRM-like requests and SSM-like statuses out.

A position report (from the app, as an MQTT message or an HTTP body)::

    {"station": "5f1c9a0e2b7d4c13", "time": "2026-11-23T07:45:12.4Z",
     "lon": 6.87221, "lat": 52.22871, "speed": 5.2, "heading": 31.5, "accuracy": 4.0}

``station`` is a pseudonym the app draws anew for every trip (8 to 64 characters); ``speed``
(m/s, GNSS Doppler), ``heading`` (degrees clockwise from north) and ``accuracy`` (the phone's
estimated horizontal error, metres) may be missing or null.
``time`` is ISO 8601 with an offset, or seconds since the epoch.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from stadsdata.apps.cycling.eta import Fix
from stadsdata.apps.cycling.requests import Decision, PriorityRequest


class MessageError(ValueError):
    """A position report that cannot be used; the message says which field and why."""


def fix_from_json(body: Any) -> Fix:
    if not isinstance(body, dict):
        raise MessageError("a position report is a JSON object")
    station = body.get("station")
    if not isinstance(station, str) or not 8 <= len(station) <= 64:
        raise MessageError("'station' must be the app's pseudonym, a string of 8 to 64 characters")
    return Fix(
        station=station,
        time=_time(body.get("time")),
        lon=_number(body, "lon", -180, 180, required=True),
        lat=_number(body, "lat", -90, 90, required=True),
        speed=_number(body, "speed", 0, 30),
        heading=_number(body, "heading", 0, 360),
        accuracy=_number(body, "accuracy", 0, 10_000),
    )


def _time(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise MessageError(f"'time': {value!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise MessageError("'time' needs an offset (Z or +01:00): a phone's local time is ambiguous")
        return parsed.timestamp()
    raise MessageError("'time' must be an ISO 8601 instant or seconds since the epoch")


def _number(body: dict[str, Any], key: str, low: float, high: float, required: bool = False) -> Any:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise MessageError(f"{key!r} must be a number from {low:g} to {high:g}")
    return float(value)


def srm_json(request: PriorityRequest) -> dict[str, Any]:
    """The fields of a signal request message (SRM) for this request."""
    return {
        "intersection": request.intersection,
        "requestId": request.request_id,
        "sequenceNumber": request.sequence,
        "requestType": "priorityRequest" if request.sequence == 0 else "priorityRequestUpdate",
        "inBoundLane": {"approach": request.approach, "lane": request.lane},
        "signalGroup": request.signal_group,
        "eta": request.eta,
        "role": "bicycle",
    }


def ssm_json(request: PriorityRequest, decision: Decision) -> dict[str, Any]:
    """The fields of a signal status message (SSM) answering ``request``."""
    return {
        "intersection": request.intersection,
        "requestId": request.request_id,
        "sequenceNumber": request.sequence,
        "signalGroup": request.signal_group,
        "status": decision.status.value,
        "expectedGreen": decision.green_at,
        "reason": decision.reason,
    }
