"""A well's series for the Dutch subsurface registry (BRO): the fields of a groundwater level dossier (GLD).

A GLD holds observations of one monitoring tube; each observation (an *aanvulling*, addition) has
its metadata and time-value pairs with a quality status per value. The field names and code lists
here are BRO's, as BRO delivery tools use them (e.g. BROSTAR's GLD addition, github.com/nens/brostar-api):

* per observation: ``observationType`` (``reguliereMeting``), ``validationStatus`` (``voorlopig`` provisional,
  ``volledigBeoordeeld`` fully assessed), ``evaluationProcedure`` (``oordeelDeskundige``: expert judgement),
  ``measurementInstrumentType`` (``druksensor`` pressure, ``akoestischeSensor`` ultrasonic, ``radarsensor``),
  ``airPressureCompensationType`` (``KNMImeting``, ``putlocatiemeting``, ``capillair`` for a vented cable …),
  ``processReference``, ``investigatorKvk``, ``beginPosition``, ``endPosition``, ``resultTime``;
* per value: ``time`` (with offset), ``value`` (m NAP), ``statusQualityControl`` (``nogNietBeoordeeld`` not yet
  assessed, ``goedgekeurd`` approved, ``afgekeurd`` rejected, ``onbeslist`` undecided), ``censorReason``,
  ``censoringLimitvalue``.

``bro_addition`` gives that as JSON (the GLD addition as BROSTAR takes it, with the monitoring tube's
``gmwBroId`` and ``tubeNumber``); ``csv`` gives the same fields, one row per value. The XML registration
request that BRO's own portal takes (IMBRO/WaterML 2.0) is made from these fields by such tools; it is not
written here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["voorlopig", "volledigBeoordeeld"]
INSTRUMENT = {"pressure": "druksensor", "ultrasonic": "akoestischeSensor", "radar": "radarsensor"}
CSV_FIELDS = (
    "gmwBroId",
    "tubeNumber",
    "observationType",
    "validationStatus",
    "evaluationProcedure",
    "measurementInstrumentType",
    "airPressureCompensationType",
    "processReference",
    "investigatorKvk",
    "time",
    "value",
    "unit",
    "statusQualityControl",
    "censorReason",
    "censoringLimitvalue",
)


@dataclass(frozen=True)
class Dossier:
    """What BRO needs to know of the well and who measured: the tube (a GMW in BRO) and the investigator."""

    gmw_bro_id: str
    tube_number: int
    investigator_kvk: str
    instrument: str = "pressure"
    """pressure, ultrasonic or radar."""
    air_pressure_compensation: str = "KNMImeting"
    """KNMImeting (a KNMI barometer), putlocatiemeting (a barometer at the well), capillair (vented cable) …"""
    process_reference: str = "onbekend"


def _time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def values(
    series: Sequence[tuple[datetime, float]], status: Status, rejected: Collection[datetime] = ()
) -> list[dict[str, Any]]:
    """Time-value pairs with their quality status: provisional values are not yet assessed; in an assessed
    series each value is approved, or rejected (``rejected``: e.g. the days a sensor drifted or flatlined)."""
    out = []
    for t, v in series:
        assessed = "afgekeurd" if t in rejected else "goedgekeurd"
        quality = "nogNietBeoordeeld" if status == "voorlopig" else assessed
        out.append(
            {
                "time": _time(t),
                "value": round(v, 3),
                "statusQualityControl": quality,
                "censorReason": None,
                "censoringLimitvalue": None,
            }
        )
    return out


def bro_addition(
    dossier: Dossier,
    series: Sequence[tuple[datetime, float]],
    status: Status = "voorlopig",
    rejected: Collection[datetime] = (),
    result_time: datetime | None = None,
) -> dict[str, Any]:
    """A GLD addition (aanvulling) of the series (time, m NAP), oldest first."""
    if not series:
        raise ValueError("an empty series cannot be exported")
    result_time = result_time or datetime.now(UTC)
    return {
        "gmwBroId": dossier.gmw_bro_id,
        "tubeNumber": dossier.tube_number,
        "date": result_time.date().isoformat(),
        "investigatorKvk": dossier.investigator_kvk,
        "observationType": "reguliereMeting",
        "validationStatus": status,
        "evaluationProcedure": "oordeelDeskundige",
        "measurementInstrumentType": INSTRUMENT.get(dossier.instrument, "onbekend"),
        "processReference": dossier.process_reference,
        "airPressureCompensationType": dossier.air_pressure_compensation if dossier.instrument == "pressure" else None,
        "beginPosition": series[0][0].astimezone(UTC).date().isoformat(),
        "endPosition": series[-1][0].astimezone(UTC).date().isoformat(),
        "resultTime": _time(result_time),
        "timeValuePairs": values(series, status, rejected),
    }


def to_csv(addition: dict[str, Any]) -> str:
    """The addition as CSV: one row per value with the observation's fields repeated; unit m NAP."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for pair in addition["timeValuePairs"]:
        row = {k: addition.get(k) for k in CSV_FIELDS if k in addition}
        row.update({k: pair[k] for k in pair})
        row["unit"] = "m NAP"
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_FIELDS})
    return buffer.getvalue()
