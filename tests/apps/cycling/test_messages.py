import pytest

from stadsdata.apps.cycling.messages import MessageError, fix_from_json, srm_json, ssm_json
from stadsdata.apps.cycling.requests import Decision, PriorityRequest, Status

REPORT = {"station": "5f1c9a0e2b7d4c13", "time": "2026-11-23T07:45:12.5Z", "lon": 6.87221, "lat": 52.22871,
          "speed": 5.2, "heading": 31.5}  # fmt: skip


def test_position_report() -> None:
    fix = fix_from_json(REPORT)
    assert (fix.station, fix.lon, fix.lat, fix.speed, fix.heading) == ("5f1c9a0e2b7d4c13", 6.87221, 52.22871, 5.2, 31.5)
    assert fix.time == pytest.approx(1795419912.5)
    assert fix_from_json({**REPORT, "time": 1795419912.5, "speed": None, "heading": None}).speed is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"station": "abc"}, "'station'"),
        ({"time": "2026-11-23T07:45:12"}, "needs an offset"),
        ({"time": "gisteren"}, "not ISO 8601"),
        ({"lat": 95}, "'lat' must be a number from -90 to 90"),
        ({"lon": None}, "'lon'"),
        ({"speed": -1}, "'speed'"),
    ],
)
def test_bad_reports_say_which_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(MessageError, match=message):
        fix_from_json({**REPORT, **change})


def test_srm_and_ssm_fields() -> None:
    r = PriorityRequest(7, "enschede-x", "south", "south-cycle-0", "22", eta=120.5, sent=110.0, sequence=2)
    srm = srm_json(r)
    assert srm["requestId"] == 7 and srm["requestType"] == "priorityRequestUpdate" and srm["eta"] == 120.5
    assert srm["signalGroup"] == "22" and srm["inBoundLane"] == {"approach": "south", "lane": "south-cycle-0"}
    ssm = ssm_json(r, Decision(Status.GRANTED, 119.5, "conflicting green ends within its limits"))
    assert (ssm["requestId"], ssm["status"], ssm["expectedGreen"]) == (7, "granted", 119.5)
