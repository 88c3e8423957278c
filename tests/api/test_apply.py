"""``$apply``: Observations aggregated per time bucket (docs/api.md, "Aggregation ($apply)").

Every test runs on each store and compares with values computed here in Python from the
fixture, so both stores give the same answers. The fixture crosses both daylight saving
switches of Europe/Amsterdam in 2026 (29 March: a 23-hour day; 25 October: a 25-hour day) and
mixes result types: only numbers take part in average/min/max/sum, $count counts every row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from stadsdata.api.serialize import _bucket_formatter
from stadsdata.model.entities import sensing_registry
from stadsdata.query.options import parse_options
from stadsdata.query.path import parse_path
from stadsdata.query.plan import plan_read
from tests import fixtures as f

V = "/v1.1"
UTC = dt.UTC
AMS = "Europe/Amsterdam"
HALF_HOUR = dt.timedelta(minutes=30)
INTERVAL_START = dt.datetime(2026, 3, 28, 10, 10, tzinfo=UTC)
AGGREGATES = (
    "aggregate(result with average as mean,result with min as min,result with max as max,"
    "result with sum as total,$count as count)"
)


def _result(i: int) -> Any:
    """Result number ``i`` of datastream 1: mostly numbers (exact in binary), some of every other type."""
    if i % 17 == 5:
        return None
    if i % 10 == 3:
        return "n/a"
    if i % 10 == 7:
        return i % 20 == 7
    if i % 19 == 11:
        return {"v": i}
    if i % 4 == 0:
        return i % 13 - 6
    return (i % 23) * 0.25 - 2.5


def _series(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out = []
    t = start
    while t < end:
        out.append(t)
        t += HALF_HOUR
    return out


TIMES_1 = _series(dt.datetime(2026, 3, 27, 21, 0, tzinfo=UTC), dt.datetime(2026, 3, 30, 23, 0, tzinfo=UTC)) + _series(
    dt.datetime(2026, 10, 23, 21, 0, tzinfo=UTC), dt.datetime(2026, 10, 26, 23, 0, tzinfo=UTC)
)
ROWS_1 = [(t, _result(i)) for i, t in enumerate(TIMES_1)] + [(INTERVAL_START, 100)]
ROWS_2 = [(dt.datetime(2026, 3, 28, h, 15, tzinfo=UTC), h * 1.5) for h in range(24)]


def _iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def data(client: TestClient) -> Iterator[TestClient]:
    """Datastream 1 (the DST fixture, plus an Observation over an interval) and Datastream 2 (one day)."""
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    second = f.datastream("other", Thing={"@iot.id": 1}, Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1})
    assert client.post(f"{V}/Datastreams", json=second).status_code == 201
    components = ["phenomenonTime", "result"]
    body = [
        {"Datastream": {"@iot.id": 1}, "components": components, "dataArray": [[_iso(t), r] for t, r in ROWS_1[:-1]]},
        {"Datastream": {"@iot.id": 2}, "components": components, "dataArray": [[_iso(t), r] for t, r in ROWS_2]},
    ]
    r = client.post(f"{V}/CreateObservations", json=body)
    assert r.status_code == 201 and not any(str(x).startswith("error") for x in r.json()), r.text
    interval = f"{_iso(INTERVAL_START)}/{_iso(INTERVAL_START + dt.timedelta(minutes=10))}"
    r = client.post(f"{V}/Observations", json={"phenomenonTime": interval, "result": 100, "Datastream": {"@iot.id": 1}})
    assert r.status_code == 201, r.text
    yield client


# ------------------------------------------------------------------ expectations in Python


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bucket(t: dt.datetime, duration: str, zone: str) -> dt.datetime:
    """The start of the bucket of ``t`` in ``zone``, in UTC (independent of the server's implementation).

    In UTC because aware datetimes of one zone compare by their wall clock: the two 02:00 of the
    night the clocks go back would be one.
    """
    tz = ZoneInfo(zone)
    local = t.astimezone(tz)
    day = local.date()
    if duration == "P1W":
        day -= dt.timedelta(days=day.weekday())
    elif duration == "P1M":
        day = day.replace(day=1)
    elif duration == "P1Y":
        day = day.replace(month=1, day=1)
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    if duration.startswith("P1"):
        return midnight.astimezone(UTC)
    step = {"PT15M": 900, "PT30M": 1800, "PT1H": 3600, "PT6H": 6 * 3600}[duration]
    start = midnight.astimezone(UTC)  # aware arithmetic in one zone would follow the wall clock
    since = (t - start).total_seconds()
    return start + dt.timedelta(seconds=since // step * step)


def _shown(t: dt.datetime, zone: str) -> str:
    return _iso(t) if zone == "UTC" else t.astimezone(ZoneInfo(zone)).isoformat()


def _summary(results: list[Any]) -> dict[str, Any]:
    numbers = [float(v) for v in results if _is_number(v)]
    total = sum(numbers) if numbers else None
    return {
        "mean": None if total is None else total / len(numbers),
        "min": min(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
        "total": total,
        "count": len(results),
    }


def _expected(
    rows: list[tuple[dt.datetime, Any]], duration: str, zone: str, keep: Callable[[dt.datetime], bool] = lambda t: True
) -> list[dict[str, Any]]:
    groups: dict[dt.datetime, list[Any]] = defaultdict(list)
    for t, r in rows:
        if keep(t):
            groups[_bucket(t, duration, zone)].append(r)
    return [{"time": _shown(b, zone), **_summary(groups[b])} for b in sorted(groups)]


def _get(client: TestClient, url: str, **params: str) -> dict[str, Any]:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _apply(duration: str, zone: str, aggregates: str = AGGREGATES, keys: str = "") -> str:
    return f"groupby((bucket(phenomenonTime,duration'{duration}','{zone}') as time{keys}),{aggregates})"


# ------------------------------------------------------------------ buckets


@pytest.mark.parametrize(
    ("duration", "zone"),
    [
        ("PT1H", "UTC"),
        ("PT1H", AMS),
        ("PT15M", AMS),
        ("PT6H", AMS),
        ("P1D", "UTC"),
        ("P1D", AMS),
        ("P1W", AMS),
        ("P1M", AMS),
        ("P1Y", "UTC"),
    ],
)
def test_buckets_match_python(data: TestClient, duration: str, zone: str) -> None:
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": _apply(duration, zone), "$top": "10000"})
    assert "@iot.nextLink" not in body
    assert body["value"] == _expected(ROWS_1, duration, zone)


EDGE_TIMES = [
    dt.datetime(1969, 12, 31, 22, 45, tzinfo=UTC),  # before 1970: buckets in the time zone, not t - t % step
    dt.datetime(1969, 12, 31, 23, 20, tzinfo=UTC),
    dt.datetime(1970, 1, 1, 0, 10, tzinfo=UTC),
    dt.datetime(1995, 6, 1, 12, 59, 59, tzinfo=UTC),
    dt.datetime(2026, 3, 29, 0, 59, tzinfo=UTC),
    dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:00 local becomes 03:00
    dt.datetime(2099, 12, 31, 22, 59, tzinfo=UTC),
    dt.datetime(2099, 12, 31, 23, 30, tzinfo=UTC),  # from local 2100: beyond the span of integer buckets
    dt.datetime(2150, 7, 1, 5, 5, tzinfo=UTC),
]


@pytest.mark.parametrize(
    ("duration", "zone"),
    [("PT1H", AMS), ("PT15M", AMS), ("PT1H", "UTC"), ("PT6H", "UTC"), ("PT30M", "Asia/Kolkata"),
     ("PT1H", "Asia/Kolkata"), ("PT1H", "America/St_Johns")],
)  # fmt: skip
def test_buckets_in_and_beyond_the_integer_span(client: TestClient, duration: str, zone: str) -> None:
    """Where buckets are whole multiples of their length since 1970 UTC they are computed with integers
    (``timebucket.aligned_span``), elsewhere in the time zone: the two meet without a seam."""
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    rows = [(t, i * 0.5) for i, t in enumerate(EDGE_TIMES)]
    body = [{"Datastream": {"@iot.id": 1}, "components": ["phenomenonTime", "result"],
             "dataArray": [[_iso(t), r] for t, r in rows]}]  # fmt: skip
    assert client.post(f"{V}/CreateObservations", json=body).status_code == 201
    got = _get(client, f"{V}/Datastreams(1)/Observations", **{"$apply": _apply(duration, zone), "$top": "100"})
    assert got["value"] == _expected(rows, duration, zone)


def test_local_days_have_23_and_25_hours(data: TestClient) -> None:
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": _apply("P1D", AMS, "aggregate($count as n)")})
    counts = {row["time"]: row["n"] for row in body["value"]}
    assert counts["2026-03-28T00:00:00+01:00"] == 48 + 1  # and the Observation over an interval
    assert counts["2026-03-29T00:00:00+01:00"] == 46  # 23 hours, half-hourly
    assert counts["2026-03-30T00:00:00+02:00"] == 48
    assert counts["2026-10-25T00:00:00+02:00"] == 50  # 25 hours
    assert counts["2026-10-26T00:00:00+01:00"] == 48
    hourly = _get(
        data,
        f"{V}/Datastreams(1)/Observations",
        **{"$apply": _apply("PT1H", AMS, "aggregate($count as n)"), "$top": "1000"},
    )
    times = [row["time"] for row in hourly["value"]]
    assert "2026-03-29T02:00:00+01:00" not in times and "2026-03-29T02:00:00+02:00" not in times
    assert times.index("2026-03-29T03:00:00+02:00") == times.index("2026-03-29T01:00:00+01:00") + 1
    assert times.index("2026-10-25T02:00:00+01:00") == times.index("2026-10-25T02:00:00+02:00") + 1


def test_filter_and_time_range(data: TestClient) -> None:
    lo, hi = dt.datetime(2026, 3, 28, 23, tzinfo=UTC), dt.datetime(2026, 3, 29, 22, tzinfo=UTC)  # a local day
    apply = f"filter(phenomenonTime ge {_iso(lo)} and phenomenonTime lt {_iso(hi)})/" + _apply("PT1H", AMS)
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": apply})
    assert body["value"] == _expected(ROWS_1, "PT1H", AMS, lambda t: lo <= t < hi)
    assert len(body["value"]) == 23
    # Several filter steps are and-ed; any $filter expression may be used.
    apply = f"filter(phenomenonTime ge {_iso(lo)})/filter(phenomenonTime lt {_iso(hi)})/filter(result gt 0)/" + _apply(
        "P1D", "UTC"
    )
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": apply})
    positive = [(t, r) for t, r in ROWS_1 if _is_number(r) and r > 0]
    assert body["value"] == _expected(positive, "P1D", "UTC", lambda t: lo <= t < hi)


def test_only_numbers_are_aggregated(data: TestClient) -> None:
    # 2026-03-28T00:00Z..01:00Z holds rows 6 and 7 of datastream 1: -1.0 (i=6) and a boolean (i=7).
    day = [(t, r) for t, r in ROWS_1 if t.date() == dt.date(2026, 3, 28)]
    kinds = {type(r) for _, r in day}
    assert {int, float, str, bool, dict, type(None)} <= kinds  # the fixture mixes every type in one day
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": _apply("P1D", "UTC")})
    row = next(r for r in body["value"] if r["time"] == "2026-03-28T00:00:00Z")
    assert row == {"time": "2026-03-28T00:00:00Z", **_summary([r for _, r in day])}
    assert row["count"] == len(day) > sum(_is_number(r) for _, r in day)
    # A bucket without numbers: count only.
    strings = "filter(result eq 'n/a')/" + _apply("P1Y", "UTC")
    body = _get(data, f"{V}/Datastreams(1)/Observations", **{"$apply": strings})
    assert body["value"] == [
        {"time": "2026-01-01T00:00:00Z", "mean": None, "min": None, "max": None, "total": None, "count": 28}
    ]


def test_group_by_datastream(data: TestClient) -> None:
    apply = _apply("P1D", AMS, keys=",Datastream/@iot.id")
    body = _get(data, f"{V}/Observations", **{"$apply": apply, "$top": "1000"})
    expected = []
    for ds, rows in ((1, ROWS_1), (2, ROWS_2)):
        expected += [{**row, "Datastream": {"@iot.id": ds}} for row in _expected(rows, "P1D", AMS)]
    expected.sort(key=lambda row: (row["time"], row["Datastream"]["@iot.id"]))
    # Ordered by the bucket start (an instant: the text compares alike within one offset here)
    got = body["value"]
    assert sorted(got, key=lambda row: (row["time"], row["Datastream"]["@iot.id"])) == expected
    assert [r["Datastream"]["@iot.id"] for r in got if r["time"] == "2026-03-28T00:00:00+01:00"] == [1, 2]
    # Renamed, and only one datastream through the path.
    body = _get(
        data,
        f"{V}/Datastreams(2)/Observations",
        **{"$apply": "groupby((Datastream/@iot.id as ds),aggregate($count as n))"},
    )
    assert body["value"] == [{"ds": 2, "n": 24}]


def test_aggregate_without_groupby(data: TestClient) -> None:
    body = _get(data, f"{V}/Datastreams(2)/Observations", **{"$apply": AGGREGATES})
    assert body["value"] == [_summary([r for _, r in ROWS_2])]
    body = _get(data, f"{V}/Observations", **{"$apply": "filter(result eq 'none of these')/aggregate($count as n)"})
    assert body["value"] == [{"n": 0}]


def test_paging_follows_next_links(data: TestClient) -> None:
    url = f"{V}/Datastreams(1)/Observations"
    apply = _apply("PT1H", AMS)
    full = _get(data, url, **{"$apply": apply, "$top": "10000", "$count": "true"})
    assert full["@iot.count"] == len(full["value"]) > 100
    default = _get(data, url, **{"$apply": apply})
    assert len(default["value"]) == 100 and "@iot.nextLink" in default
    for order in (None, "mean desc", "count,mean desc"):
        params = {"$apply": apply, "$top": "7", "$count": "true"}
        if order:
            params["$orderby"] = order
        ordered = _get(data, url, **{**params, "$top": "10000"})["value"]
        page = _get(data, url, **params)
        seen = list(page["value"])
        while "@iot.nextLink" in page:
            assert page["@iot.count"] == len(ordered)
            page = data.get(page["@iot.nextLink"]).json()
            seen += page["value"]
        assert seen == ordered
        assert sorted(seen, key=lambda r: r["time"]) == sorted(full["value"], key=lambda r: r["time"])
    means = [r["mean"] for r in _get(data, url, **{"$apply": apply, "$orderby": "mean desc", "$top": "10000"})["value"]]
    numbers = [m for m in means if m is not None]
    assert numbers == sorted(numbers, reverse=True) and means[len(numbers) :] == [None] * (len(means) - len(numbers))
    skipped = _get(data, url, **{"$apply": apply, "$skip": "3", "$top": "2"})
    assert skipped["value"] == full["value"][3:5]


def test_unknown_parent_is_404(data: TestClient) -> None:
    r = data.get(f"{V}/Datastreams(99)/Observations", params={"$apply": "aggregate($count as n)"})
    assert r.status_code == 404


BAD = [
    # (path, query parameters, option, words in the message)
    (
        "Observations",
        {"$apply": "groupby((bucket(phenomenonTime,duration'PT1H','Mars/Olympus') as t))"},
        "$apply",
        "unknown time zone",
    ),
    (
        "Observations",
        {"$apply": "groupby((bucket(phenomenonTime,duration'PT7M') as t))"},
        "$apply",
        "does not divide a day",
    ),
    ("Observations", {"$apply": "groupby((bucket(phenomenonTime,duration'P2M') as t))"}, "$apply", "is not supported"),
    ("Observations", {"$apply": "groupby((bucket(phenomenonTime,duration'PT1H')))"}, "$apply", "name the bucket"),
    ("Observations", {"$apply": "aggregate(result with median as m)"}, "$apply", "unknown aggregation method 'median'"),
    (
        "Observations",
        {"$apply": "aggregate(result with countdistinct as m)"},
        "$apply",
        "countdistinct is not supported",
    ),
    ("Observations", {"$apply": "frobnicate(result)"}, "$apply", "expected a transformation"),
    ("Observations", {"$apply": "aggregate(phenomenonTime with max as m)"}, "$apply", "only the result is aggregated"),
    (
        "Observations",
        {"$apply": "aggregate(name with sum as s)"},
        "$apply",
        "Observation has no property or relation 'name'",
    ),
    ("Observations", {"$apply": "groupby((result))"}, "$apply", "cannot group by result"),
    ("Observations", {"$apply": "groupby((bucket(result,duration'PT1H') as t))"}, "$apply", "bucket() takes a time"),
    ("Things", {"$apply": "aggregate($count as n)"}, "$apply", "Things cannot be aggregated"),
    ("Observations(1)", {"$apply": "aggregate($count as n)"}, "$apply", "is not one"),
    ("Observations", {"$apply": "groupby((bucket(phenomenonTime,duration'PT1H') as t)"}, "$apply", "never closed"),
    ("Observations", {"$apply": "aggregate(result with sum)"}, "$apply", "expected 'as' and a name"),
    ("Observations", {"$apply": "aggregate($count as n,$count as n)"}, "$apply", "given twice"),
    ("Observations", {"$apply": "aggregate($count as n)/filter(result gt 1)"}, "$apply", "nothing may follow"),
    ("Observations", {"$apply": "filter(result gt 1)"}, "$apply", "needs a groupby"),
    (
        "Observations",
        {"$apply": "filter(phenomenonTime eq 'x')/aggregate($count as n)"},
        "$apply",
        "cannot compare a string",
    ),
    (
        "Observations",
        {"$apply": "filter(nothing eq 1)/aggregate($count as n)"},
        "$apply",
        "no property or relation 'nothing'",
    ),
    ("Observations", {"$apply": ""}, "$apply", "value is empty"),
    ("Observations", {"$apply": "aggregate($count as n)", "$filter": "result gt 1"}, "$filter", "cannot be combined"),
    ("Observations", {"$apply": "aggregate($count as n)", "$orderby": "result"}, "$orderby", "order by the names"),
    ("Observations", {"$apply": "aggregate($count as n)", "$skiptoken": "WzFd"}, "$skiptoken", "does not belong"),
]


@pytest.mark.parametrize(("path", "params", "option", "words"), BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_input_is_400(data: TestClient, path: str, params: dict[str, str], option: str, words: str) -> None:
    r = data.get(f"{V}/{path}", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["option"] == option
    assert words in body["message"], body["message"]
    if option == "$apply":
        assert isinstance(body.get("position"), int), body


# ------------------------------------------------------------------ indexes


@pytest.mark.parametrize("duration", ["PT15M", "PT1H"])
def test_the_datastream_time_index_bounds_the_scan(data: TestClient, duration: str) -> None:
    """The (datastream_id, phenomenon_time_start, id) index serves the path and both ends of the time range; for
    buckets of whole hours, read from the hourly summaries, their primary key (datastream_id, hour) does."""
    registry = sensing_registry()
    apply = "filter(phenomenonTime ge 2026-03-28T00:00:00Z and phenomenonTime lt 2026-03-29T00:00:00Z)/" + _apply(
        duration, AMS
    )
    plan = plan_read(registry, parse_path(registry, "Datastreams(1)/Observations"), parse_options({"$apply": apply}))
    store = data.app.state.store  # type: ignore[attr-defined]
    postgres = store.dialect.lateral_expand

    def explain(session: Any) -> str:
        sql, params = session._compile(session.compiler.apply_page(plan, plan.steps, param=True))
        if postgres:
            session.conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask whether the index can serve
            rows = session.conn.execute("EXPLAIN " + sql, params(None)).fetchall()
        else:
            rows = session.conn.execute("EXPLAIN QUERY PLAN " + sql, params(None)).fetchall()
        return "\n".join(str(r[-1]) for r in rows)

    text = asyncio.run(store.run_read(explain))
    if duration == "PT1H":
        if postgres:
            cond = next(line for line in text.splitlines() if "Index Cond" in line and "hour" in line)
            assert "datastream_id = " in cond and "hour >=" in cond and "hour <" in cond, text
        else:
            assert "observation_hours USING PRIMARY KEY (datastream_id=? AND hour>? AND hour<?)" in text, text
        return
    if postgres:
        # Without statistics (a fresh, tiny table) the planner may take either index on the time;
        # what matters is that both ends of the range are index conditions.
        cond = next(line for line in text.splitlines() if "Index Cond" in line)
        assert "phenomenon_time_start >=" in cond and "phenomenon_time_start <" in cond, text
    else:
        assert "ix_observations_datastream_time" in text, text
        assert "datastream_id=? AND phenomenon_time_start>? AND phenomenon_time_start<?" in text, text


@pytest.mark.parametrize(
    "zone",
    [AMS, "Asia/Kolkata", "America/St_Johns", "Australia/Lord_Howe", "Africa/Casablanca", "Europe/Dublin",
     "America/Havana", "Pacific/Apia", "Asia/Kathmandu"],
)  # fmt: skip
def test_bucket_starts_are_written_as_isoformat_writes_them(zone: str) -> None:
    """The bucket starts of a response are written per local day (``serialize._bucket_formatter``); the text is
    what ``isoformat`` writes of the instant in the zone, also on the days the clocks change."""
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    values = sorted(rng.randrange(-2 * 10**15, 4 * 10**15) for _ in range(5000))
    values += [1_735_686_000_000_000 + i * 900_000_000 for i in range(40_000)]  # every quarter of 2025
    values += [v + rng.randrange(1, 10**6) for v in values[:500]]  # with microseconds
    write = _bucket_formatter(zone)
    for v in values:
        seconds, micros = divmod(v, 1_000_000)
        local = dt.datetime.fromtimestamp(seconds, tz).replace(microsecond=micros)
        assert write(v) == local.isoformat(), v
