"""Golden tests of the query language over the fixture city of ``city.py``.

Each expectation is written from the city's definition (names, the formulas of
the observations), never from the server's answers; ids are resolved by name.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from starlette.testclient import TestClient

from tests.query.city import BASE, DS, TEMP_HOURS, THINGS, City, ObsDef

# A square around Roombeek: it holds both Roombeek wells and the Roombeek grid polygon.
Q = "POLYGON((6.885 52.224, 6.905 52.224, 6.905 52.236, 6.885 52.236, 6.885 52.224))"


@pytest.fixture(scope="module")
def env(city_env: tuple[TestClient, City]) -> tuple[TestClient, City]:
    """The fixture city, on every store (see ``conftest.py``)."""
    return city_env


def get(client: TestClient, url: str, status: int = 200) -> Any:
    response = client.get(url if url.startswith(("http", "/")) else f"{BASE}/{url}")
    assert response.status_code == status, (url, response.status_code, response.text)
    return response.json()


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------ expectations by name


def things(*names: str) -> Callable[[City], set[int]]:
    return lambda c: {c.things[n] for n in names}


def locations(*names: str) -> Callable[[City], set[int]]:
    return lambda c: {c.locations[n] for n in names}


def datastreams(*names: str) -> Callable[[City], set[int]]:
    return lambda c: {c.datastreams[n] for n in names}


def obs(pred: Callable[[ObsDef], bool], *ds: str) -> Callable[[City], set[int]]:
    return lambda c: c.obs_ids(pred, *ds)


def num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def r(pred: Callable[[Any], bool]) -> Callable[[ObsDef], bool]:
    """A predicate on numeric results."""
    return lambda o: num(o.result) and pred(o.result)


def s(pred: Callable[[str], bool]) -> Callable[[ObsDef], bool]:
    """A predicate on string results."""
    return lambda o: isinstance(o.result, str) and pred(o.result)


def member(key: str, pred: Callable[[Any], bool]) -> Callable[[ObsDef], bool]:
    return lambda o: isinstance(o.result, dict) and key in o.result and pred(o.result[key])


def round_half_away(x: float) -> float:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def before(a0: dt.datetime, a1: dt.datetime, b0: dt.datetime, b1: dt.datetime) -> bool:
    return a1 < b0 or (a1 == b0 and a0 < a1)


@dataclass(frozen=True)
class Case:
    filter: str
    expected: Callable[[City], set[int]]
    entity_set: str = "Observations"
    bug: str | None = None


T2 = t("2026-01-01T02:00:00Z")
T3 = t("2026-01-01T03:00:00Z")
T5 = t("2026-01-01T05:00:00Z")
T530 = t("2026-01-01T05:30:00Z")
JAN2_NOON = t("2026-01-02T12:00:00Z")

FILTER_CASES: list[Case] = [
    # -- comparison operators on numeric, string, boolean and null results
    Case("Datastream/name eq 'level R12' and result eq 2.5", obs(r(lambda v: v == 2.5), "level R12")),
    Case("result eq 2", obs(r(lambda v: v == 2))),
    Case("Datastream/name eq 'level R40' and result ne 5", obs(r(lambda v: v != 5), "level R40")),
    Case("result gt 40", obs(r(lambda v: v > 40))),
    Case("result ge 43.5", obs(r(lambda v: v >= 43.5))),
    Case("result lt -2.5", obs(r(lambda v: v < -2.5))),
    Case("result le -3", obs(r(lambda v: v <= -3))),
    Case("3 lt result and result lt 4", obs(r(lambda v: 3 < v < 4))),
    Case("result eq 'warn'", obs(s(lambda v: v == "warn"))),
    Case("result eq 'o''brien'", obs(s(lambda v: v == "o'brien"))),
    Case("result gt 'ok'", obs(s(lambda v: v > "ok"))),
    Case("result le 'OK'", obs(s(lambda v: v <= "OK"))),
    Case("result eq true", obs(lambda o: o.result is True)),
    Case("result ne false and Datastream/name eq 'door Pathmos'", obs(lambda o: o.result is True, "door Pathmos")),
    Case("result eq null", obs(lambda o: o.result is None)),
    Case("result ne null and Datastream/name eq 'level R40'", obs(lambda o: o.result is not None, "level R40")),
    Case("null eq result", obs(lambda o: o.result is None)),
    Case("name eq 'Air Centrum'", things("Air Centrum"), "Things"),
    Case("name ne 'Air Centrum' and name lt 'B'", things("Air Pathmos"), "Things"),
    Case(
        "description eq 'groundwater well'", things("Well Roombeek 12", "Well Roombeek 40", "Well Lasonder 7"), "Things"
    ),
    # -- logical operators and precedence
    Case(
        "name eq 'Spare unit' or name eq 'Air Centrum' and name eq 'Air Pathmos'",
        things("Spare unit"),
        "Things",
    ),
    Case(
        "(name eq 'Spare unit' or name eq 'Air Centrum') and description eq 'air quality box'",
        things("Air Centrum"),
        "Things",
    ),
    Case(
        "not startswith(name, 'Well') and not (name eq 'Spare unit')",
        things(*[n.name for n in THINGS if n.name != "Spare unit" and not n.name.startswith("Well")]),
        "Things",
    ),
    Case(
        "not (name eq 'Spare unit' or startswith(name, 'Well'))",
        things(*[n.name for n in THINGS if n.name != "Spare unit" and not n.name.startswith("Well")]),
        "Things",
    ),
    Case(
        "Datastream/name eq 'door Pathmos' and not (result eq true)",
        obs(lambda o: o.result is not True, "door Pathmos"),
    ),
    # -- arithmetic and its precedence
    Case("Datastream/name eq 'level R12' and result add 1 mul 2 gt 8", obs(r(lambda v: v + 2 > 8), "level R12")),
    Case(
        "Datastream/name eq 'level R12' and (result add 1) mul 2 gt 8", obs(r(lambda v: (v + 1) * 2 > 8), "level R12")
    ),
    Case("Datastream/name eq 'level R12' and result sub 1 sub 1 eq 0", obs(r(lambda v: v - 2 == 0), "level R12")),
    Case(
        "Datastream/name eq 'level R40' and 10 sub result mul 2 gt 15", obs(r(lambda v: 10 - v * 2 > 15), "level R40")
    ),
    Case("Datastream/name eq 'level R40' and result div 2 eq 2.5", obs(r(lambda v: v / 2 == 2.5), "level R40")),
    Case("Datastream/name eq 'level R40' and result div 0 gt 1", obs(lambda o: False)),
    Case("Datastream/name eq 'level R40' and result mod 3 eq 1", obs(r(lambda v: math.fmod(v, 3) == 1), "level R40")),
    Case(
        "Datastream/name eq 'level R12' and result mod 2 eq 0.5", obs(r(lambda v: math.fmod(v, 2) == 0.5), "level R12")
    ),
    Case(
        "Datastream/name eq 'level L7' and result mod 1.5 eq -0.5",
        obs(r(lambda v: math.fmod(v, 1.5) == -0.5), "level L7"),
    ),
    Case("Datastream/name eq 'level R12' and result mod 0 eq 0", obs(lambda o: False)),
    Case("Datastream/name eq 'level R12' and not (result mod 0 eq 0)", obs(lambda o: True, "level R12")),
    Case("-7 mod 2 eq -1 and 7 mod -2 eq 1 and 7.5 mod 2 eq 1.5", obs(lambda o: True)),
    Case("Datastream/name eq 'level R12' and -result gt 1", obs(r(lambda v: -v > 1), "level R12")),
    Case("Datastream/name eq 'level R12' and -(result sub 3) gt 0", obs(r(lambda v: -(v - 3) > 0), "level R12")),
    Case(
        "Datastream/name eq 'level R40' and not (result add 1 gt 5)",
        obs(lambda o: not (num(o.result) and o.result + 1 > 5), "level R40"),
    ),
    Case("Datastream/name eq 'door Pathmos' and result add 0 gt 0.5", obs(lambda o: False)),
    Case("Datastream/name eq 'door Pathmos' and not (result add 0 gt 0.5)", obs(lambda o: True, "door Pathmos")),
    Case("Datastream/name eq 'door Pathmos' and round(result) eq 1", obs(lambda o: False)),
    # -- a comparison with a null operand is false, so a not above it is true
    Case(
        "not (resultTime gt 2026-01-02T00:00:00Z)",
        obs(lambda o: o.result_time is None or o.result_time <= t("2026-01-02T00:00:00Z")),
    ),
    Case("not (length(result) gt 3)", obs(lambda o: not (isinstance(o.result, str) and len(o.result) > 3))),
    Case("not (result eq 'ok' or result eq 'warn')", obs(lambda o: o.result not in ("ok", "warn"))),
    Case(
        "not not (resultTime le 2026-01-02T00:00:00Z)",
        obs(lambda o: o.result_time is not None and o.result_time <= t("2026-01-02T00:00:00Z")),
    ),
    # a function of a null argument stays null, and so does not() of it
    Case("not startswith(result, 'o')", obs(s(lambda v: not v.startswith("o")))),
    # -- string functions
    Case("substringof('ok', result)", obs(s(lambda v: "ok" in v))),
    Case("startswith(name, 'Well')", things("Well Roombeek 12", "Well Roombeek 40", "Well Lasonder 7"), "Things"),
    Case("endswith(name, 'straat')", things("Bikes Hengelosestraat", "Bikes Oldenzaalsestraat"), "Things"),
    Case("length(result) eq 2", obs(s(lambda v: len(v) == 2))),
    Case("length(result) eq 6", obs(s(lambda v: len(v) == 6))),
    Case("indexof(name, 'Roombeek') eq 5", things("Well Roombeek 12", "Well Roombeek 40"), "Things"),
    Case("indexof(name, 'Roombeek') eq 0", things("Roombeek grid"), "Things"),
    Case("substring(name, 5) eq 'Roombeek 12'", things("Well Roombeek 12"), "Things"),
    Case(
        "substring(name, 0, 4) eq 'Well'", things("Well Roombeek 12", "Well Roombeek 40", "Well Lasonder 7"), "Things"
    ),
    Case("substring(name, 5, 3) eq 'Roo'", things("Well Roombeek 12", "Well Roombeek 40"), "Things"),
    Case("tolower(result) eq 'warn'", obs(s(lambda v: v.lower() == "warn"))),
    Case("toupper(result) eq 'OK'", obs(s(lambda v: v.upper() == "OK"))),
    Case("trim(result) eq 'ok'", obs(s(lambda v: v.strip() == "ok"))),
    Case("concat(concat(name, ' / '), properties/buurt) eq 'Air Centrum / Centrum'", things("Air Centrum"), "Things"),
    Case("concat(result, '!') eq 'fault!'", obs(s(lambda v: v == "fault"))),
    # -- date and time functions
    Case("year(phenomenonTime) eq 2025", obs(lambda o: o.start.year == 2025)),
    Case("month(phenomenonTime) eq 12", obs(lambda o: o.start.month == 12)),
    Case("day(phenomenonTime) eq 3", obs(lambda o: o.start.day == 3)),
    Case("hour(phenomenonTime) eq 5 and Datastream/name eq 'level R12'", obs(lambda o: o.start.hour == 5, "level R12")),
    Case("minute(phenomenonTime) eq 30", obs(lambda o: o.start.minute == 30)),
    Case("second(phenomenonTime) eq 0", obs(lambda o: o.start.second == 0)),
    Case("fractionalseconds(phenomenonTime) eq 0", obs(lambda o: True)),
    Case("date(phenomenonTime) eq 2026-01-03", obs(lambda o: o.start.date() == dt.date(2026, 1, 3))),
    Case("time(phenomenonTime) eq 12:00:00", obs(lambda o: o.start.time() == dt.time(12))),
    Case("totaloffsetminutes(phenomenonTime) eq 0", obs(lambda o: True)),
    Case("now() gt 2020-01-01T00:00:00Z and Datastream/name eq 'log L7'", obs(lambda o: True, "log L7")),
    # mindatetime() and maxdatetime() take no arguments (OData): the earliest and latest date-time.
    Case("phenomenonTime gt mindatetime()", obs(lambda o: True)),
    Case("phenomenonTime lt maxdatetime()", obs(lambda o: True)),
    Case("mindatetime() lt 0001-01-01T00:00:01Z and maxdatetime() gt 9999-12-31T23:59:59Z", obs(lambda o: True)),
    Case(
        "resultTime sub duration'PT5M' eq 2026-01-02T00:00:00Z",
        obs(lambda o: o.start == t("2026-01-02T00:00:00Z"), "pm10 Centrum"),
    ),
    Case(
        "resultTime ge 2026-01-03T00:00:00Z",
        obs(lambda o: o.result_time is not None and o.result_time >= t("2026-01-03T00:00:00Z")),
    ),
    Case(
        "phenomenonTime gt 2026-01-02T00:00:00Z and phenomenonTime lt 2026-01-02T03:00:00Z",
        obs(lambda o: o.start > t("2026-01-02T00:00:00Z") and o.last < t("2026-01-02T03:00:00Z")),
    ),
    Case("phenomenonTime eq 2026-01-01T05:00:00Z", obs(lambda o: o.start == T5 and o.last == T5)),
    # -- math functions
    Case("round(result) eq 3 and Datastream/name eq 'level L7'", obs(r(lambda v: round_half_away(v) == 3), "level L7")),
    Case(
        "round(result) eq -3 and Datastream/name eq 'level L7'", obs(r(lambda v: round_half_away(v) == -3), "level L7")
    ),
    Case("floor(result) eq -1 and Datastream/name eq 'level L7'", obs(r(lambda v: math.floor(v) == -1), "level L7")),
    Case("ceiling(result) eq 0 and Datastream/name eq 'level L7'", obs(r(lambda v: math.ceil(v) == 0), "level L7")),
    # -- geospatial functions
    Case(
        f"geo.intersects(location, geography'{Q}')",
        locations("Roombeek 12", "Roombeek 40", "Roombeek grid"),
        "Locations",
    ),
    Case(
        f"st_intersects(location, geography'{Q}')",
        locations("Roombeek 12", "Roombeek 40", "Roombeek grid"),
        "Locations",
    ),
    Case(f"st_within(location, geography'{Q}')", locations("Roombeek 12", "Roombeek 40", "Roombeek grid"), "Locations"),
    Case(
        f"st_disjoint(location, geography'{Q}')",
        locations(
            "Lasonderbleek 7",
            "Oude Markt",
            "Pathmosplein",
            "Hengelosestraat 300",
            "Oldenzaalsestraat 120",
            "Depot Marssteden",
        ),
        "Locations",
    ),
    Case("st_contains(location, geography'POINT(6.895 52.230)')", locations("Roombeek grid"), "Locations"),
    Case("st_equals(location, geography'POINT(6.8702 52.2248)')", locations("Hengelosestraat 300"), "Locations"),
    Case(
        "st_touches(location, geography'LINESTRING(6.900 52.226, 6.910 52.226)')",
        locations("Roombeek grid"),
        "Locations",
    ),
    Case(
        "st_crosses(location, geography'LINESTRING(6.880 52.230, 6.895 52.230)')",
        locations("Roombeek grid"),
        "Locations",
    ),
    Case(
        "st_overlaps(location, geography'POLYGON((6.895 52.230, 6.910 52.230, 6.910 52.240, 6.895 52.240,"
        " 6.895 52.230))')",
        locations("Roombeek grid"),
        "Locations",
    ),
    Case(
        f"st_relate(location, geography'{Q}', 'T*F**F***')",
        locations("Roombeek 12", "Roombeek 40", "Roombeek grid"),
        "Locations",
    ),
    # The grid polygon's edge is 0.0045 degrees from the Oude Markt.
    Case(
        "geo.distance(location, geography'POINT(6.8937 52.2215)') lt 0.005",
        locations("Oude Markt", "Roombeek grid"),
        "Locations",
    ),
    Case("geo.distance(location, geography'POINT(6.8937 52.2215)') eq 0", locations("Oude Markt"), "Locations"),
    # Only curves have a length (OGC Simple Features): a polygon's is 0, not its perimeter.
    Case("geo.length(location) gt 0", locations(), "Locations"),
    Case("geo.length(geography'LINESTRING(0 0, 3 4)') eq 5", lambda c: set(c.locations.values()), "Locations"),
    Case("geo.length(geography'POLYGON((0 0, 3 0, 3 4, 0 0))') eq 0", lambda c: set(c.locations.values()), "Locations"),
    Case(
        "geo.length(geography'GEOMETRYCOLLECTION(POINT(1 1), LINESTRING(0 0, 3 4), POLYGON((0 0, 1 0, 1 1, 0 0)))')"
        " eq 5",
        lambda c: set(c.locations.values()),
        "Locations",
    ),
    Case(f"st_within(FeatureOfInterest/feature, geography'{Q}')", obs(lambda o: True, "level R12", "level R40")),
    Case(
        f"st_within(Locations/location, geography'{Q}')",
        things("Well Roombeek 12", "Well Roombeek 40", "Roombeek grid", "Spare unit"),
        "Things",
    ),
    Case(
        f"st_within(Thing/Locations/location, geography'{Q}')",
        datastreams(*[d.name for d in DS.values() if d.thing in ("Well Roombeek 12", "Well Roombeek 40")]),
        "Datastreams",
    ),
    Case(
        f"not st_within(Locations/location, geography'{Q}')",
        things(
            *[
                n.name
                for n in THINGS
                if n.name not in ("Well Roombeek 12", "Well Roombeek 40", "Roombeek grid", "Spare unit")
            ]
        ),
        "Things",
    ),
    # -- temporal functions (half-open intervals; an instant is [t, t])
    Case("before(phenomenonTime, 2026-01-01T03:00:00Z)", obs(lambda o: before(o.start, o.last, T3, T3))),
    Case("after(phenomenonTime, 2026-01-02T12:00:00Z)", obs(lambda o: o.start > JAN2_NOON)),
    Case(
        "meets(phenomenonTime, 2026-01-01T05:00:00Z)",
        obs(lambda o: o.last == T5 or o.start == T5),
    ),
    Case("during(phenomenonTime, validTime)", obs(lambda o: o.valid_time is not None)),
    Case(
        "during(phenomenonTime, 2026-01-01T00:00:00Z) or during(validTime, validTime)",
        obs(lambda o: o.valid_time is not None),
    ),
    Case(
        "overlaps(validTime, 2026-01-02T00:30:00Z)",
        obs(lambda o: o.valid_time is not None and o.start == t("2026-01-02T00:00:00Z")),
    ),
    Case(
        "overlaps(phenomenonTime, 2026-01-01T05:30:00Z)",
        obs(lambda o: o.start <= T530 <= o.last and (o.start < T530 or o.start == o.last)),
    ),
    Case("starts(phenomenonTime, 2026-01-01T02:00:00Z)", obs(lambda o: o.start == T2)),
    Case("finishes(phenomenonTime, 2026-01-01T02:00:00Z)", obs(lambda o: o.last == T2)),
    Case(
        "Datastream/name eq 'count Hengelosestraat' and before(phenomenonTime, 2026-01-01T03:00:00Z)",
        obs(lambda o: o.start < T3, "count Hengelosestraat"),
    ),
    # -- paths through relations
    Case(
        "Datastream/Thing/name eq 'Air Centrum'", obs(lambda o: True, "pm10 Centrum", "status Centrum", "temp Centrum")
    ),
    Case("Datastream/Thing/properties/buurt eq 'Roombeek'", obs(lambda o: True, "level R12", "level R40")),
    Case("Datastream/ObservedProperty/name eq 'PM10'", obs(lambda o: True, "pm10 Centrum", "pm10 Pathmos")),
    Case("Thing/name eq 'Air Pathmos'", datastreams("pm10 Pathmos", "door Pathmos"), "Datastreams"),
    Case(
        "Thing/@iot.id eq 3",
        lambda c: {c.datastreams[d.name] for d in DS.values() if c.things[d.thing] == 3},
        "Datastreams",
    ),
    Case(
        "Sensor/name eq 'Status panel' and Thing/properties/kind eq 'air'",
        datastreams("status Centrum", "door Pathmos"),
        "Datastreams",
    ),
    Case(
        "Datastreams/Observations/result gt 40",
        things("Air Pathmos", "Bikes Hengelosestraat", "Bikes Oldenzaalsestraat"),
        "Things",
    ),
    Case(
        "not (Datastreams/Observations/result gt 40)",
        things("Well Roombeek 12", "Well Roombeek 40", "Well Lasonder 7", "Air Centrum", "Roombeek grid", "Spare unit"),
        "Things",
    ),
    Case("Datastreams/name eq 'log L7'", things("Well Lasonder 7"), "Things"),
    Case("Datastreams/Observations/result eq 'fault'", lambda c: {c.sensors["Status panel"]}, "Sensors"),
    Case(
        "Datastreams/Thing/name eq 'Air Pathmos'",
        lambda c: {c.observed_properties[n] for n in ("PM10", "door open")},
        "ObservedProperties",
    ),
    Case("Locations/name eq 'Roombeek grid'", things("Roombeek grid", "Spare unit"), "Things"),
    Case("Locations/name eq 'Roombeek grid' and Locations/name eq 'Depot Marssteden'", things("Spare unit"), "Things"),
    Case("Things/Datastreams/name eq 'level R40'", locations("Roombeek 40"), "Locations"),
    Case("Things/name eq 'Spare unit'", locations("Depot Marssteden", "Roombeek grid"), "Locations"),
    # -- paths into JSON
    Case("properties/buurt eq 'Roombeek'", things("Well Roombeek 12", "Well Roombeek 40", "Roombeek grid"), "Things"),
    Case("properties/depth gt 3", things("Well Roombeek 12", "Well Roombeek 40"), "Things"),
    Case("properties/lanes eq 2", things("Bikes Hengelosestraat"), "Things"),
    Case("properties/buurt eq null", things("Spare unit"), "Things"),
    Case("result/level gt 1", obs(member("level", lambda v: num(v) and v > 1))),
    Case("result/level eq 2.5", obs(member("level", lambda v: v == 2.5))),
    Case("result/direction eq 'in'", obs(member("direction", lambda v: v == "in"))),
    Case("result/ok eq false", obs(member("ok", lambda v: v is False))),
    Case("parameters/calibrated eq true", obs(lambda o: bool(o.parameters and o.parameters.get("calibrated") is True))),
    Case("parameters/lane eq 'north'", obs(lambda o: bool(o.parameters and o.parameters.get("lane") == "north"))),
    Case("unitOfMeasurement/symbol eq 'm'", datastreams("level R12", "level R40", "level L7"), "Datastreams"),
]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=f"bug: {c.bug}")) if c.bug else c
        for c in FILTER_CASES
    ],
    ids=[f"{c.entity_set}:{c.filter}" for c in FILTER_CASES],
)
def test_filter(env: tuple[TestClient, City], case: Case) -> None:
    client, city = env
    doc = get(client, f"{case.entity_set}?$filter={quote(case.filter)}&$top=10000&$select=id&$count=true")
    found = [v["@iot.id"] for v in doc["value"]]
    assert doc["@iot.count"] == len(found)
    assert set(found) == case.expected(city)
    assert len(found) == len(set(found))


def test_the_city_is_as_defined(env: tuple[TestClient, City]) -> None:
    client, city = env
    assert get(client, "Observations?$count=true&$top=0")["@iot.count"] == len(city.observations) == 324 + TEMP_HOURS
    assert get(client, "Things?$count=true&$top=0")["@iot.count"] == len(THINGS)
    o = next(city.obs("count Hengelosestraat"))
    doc = get(client, f"Observations({o.id})")
    assert doc["phenomenonTime"] == "2026-01-01T00:00:00Z/2026-01-01T01:00:00Z"
    assert doc["parameters"] == {"lane": "south"}
    p = [o for o in city.obs("pm10 Pathmos") if o.valid_time][0]
    doc = get(client, f"Observations({p.id})")
    assert doc["validTime"] == "2026-01-04T04:00:00Z/2026-01-05T04:00:00Z"


# ------------------------------------------------------------------ $orderby


def names(doc: Any) -> list[str]:
    return [v["name"] for v in doc["value"]]


def test_orderby_json_member_with_nulls_first_then_name_desc(env: tuple[TestClient, City]) -> None:
    client, _ = env
    doc = get(client, "Things?$orderby=properties/buurt,name desc&$select=name")
    expected = sorted(THINGS, key=lambda th: th.name, reverse=True)
    expected.sort(key=lambda th: (th.properties is not None, (th.properties or {}).get("buurt", "")))
    assert names(doc) == [th.name for th in expected]


def test_orderby_relation_path(env: tuple[TestClient, City]) -> None:
    client, _ = env
    doc = get(client, "Datastreams?$orderby=Thing/name desc,name&$select=name")
    expected = sorted(DS.values(), key=lambda d: d.name)
    expected.sort(key=lambda d: d.thing, reverse=True)
    assert names(doc) == [d.name for d in expected]


def test_orderby_two_relations_deep(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client,
        "Observations?$filter=result eq 'warn' or result eq true&$orderby=Datastream/Thing/name,id desc&$select=id",
    )
    picked = [o for o in city.observations if o.result == "warn" and isinstance(o.result, str) or o.result is True]
    picked.sort(key=lambda o: o.id, reverse=True)
    picked.sort(key=lambda o: o.thing)
    assert [v["@iot.id"] for v in doc["value"]] == [o.id for o in picked]


@pytest.mark.parametrize("desc", [False, True])
def test_orderby_result_with_nulls(env: tuple[TestClient, City], desc: bool) -> None:
    """Nulls first when ascending, last when descending; ties broken by phenomenonTime."""
    client, city = env
    direction = " desc" if desc else ""
    doc = get(
        client,
        f"Observations?$filter=Datastream/name eq 'level R40'&$orderby=result{direction},phenomenonTime&$select=id",
    )
    items = list(city.obs("level R40"))
    nulls = sorted((o for o in items if o.result is None), key=lambda o: o.start)
    values = sorted((o for o in items if o.result is not None), key=lambda o: o.start)
    values.sort(key=lambda o: o.result, reverse=desc)
    expected = values + nulls if desc else nulls + values
    assert [v["@iot.id"] for v in doc["value"]] == [o.id for o in expected]


def test_orderby_function(env: tuple[TestClient, City]) -> None:
    client, _ = env
    doc = get(client, "Things?$orderby=length(name) desc,name&$select=name")
    assert names(doc) == [th.name for th in sorted(THINGS, key=lambda th: (-len(th.name), th.name))]


# ------------------------------------------------------------------ $top, $skip, $count, nextLink


def follow(client: TestClient, doc: Any, key: str = "@iot.nextLink") -> Iterator[Any]:
    while True:
        yield doc
        link = doc.get(key)
        if link is None:
            return
        u = urlsplit(link)
        doc = get(client, f"{u.path}?{u.query}")


def test_paging_a_long_series_newest_first(env: tuple[TestClient, City]) -> None:
    """Thousands of rows of one Datastream, newest first, page after page over nextLink, in a time window."""
    client, city = env
    ds = city.datastreams["temp Centrum"]
    window = "phenomenonTime ge 2025-10-01T00:00:00Z and phenomenonTime lt 2025-12-01T00:00:00Z"
    first = get(
        client,
        f"Datastreams({ds})/Observations?$filter={quote(window)}&$orderby=phenomenonTime desc"
        "&$top=700&$count=true&$select=id,phenomenonTime,result",
    )
    pages = list(follow(client, first))
    assert first["@iot.count"] == (30 + 31) * 24
    assert [len(p["value"]) for p in pages] == [700, 700, 64]
    lo, hi = dt.datetime(2025, 10, 1, tzinfo=dt.UTC), dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
    expected = sorted((o for o in city.obs("temp Centrum") if lo <= o.start < hi), key=lambda o: o.start, reverse=True)
    rows = [v for p in pages for v in p["value"]]
    assert [(v["@iot.id"], v["result"]) for v in rows] == [(o.id, o.result) for o in expected]
    assert rows[0]["phenomenonTime"] == "2025-11-30T23:00:00Z"


def test_count_with_filter_and_paging(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(client, "Observations?$filter=Datastream/name eq 'door Pathmos'&$count=true&$top=2&$select=id")
    assert doc["@iot.count"] == 20
    assert [v["@iot.id"] for v in doc["value"]] == sorted(o.id for o in city.obs("door Pathmos"))[:2]
    assert "@iot.nextLink" in doc


def test_top_skip_and_next_links_cover_the_rest(env: tuple[TestClient, City]) -> None:
    client, city = env
    url = (
        "Observations?$filter=Datastream/name eq 'pm10 Pathmos'"
        "&$orderby=result desc,phenomenonTime&$top=7&$skip=3&$select=id,result"
    )
    pages = list(follow(client, get(client, url)))
    expected = sorted(city.obs("pm10 Pathmos"), key=lambda o: o.start)
    expected.sort(key=lambda o: o.result, reverse=True)
    assert [len(p["value"]) for p in pages] == [7, 7, 7, 6]
    assert [v["@iot.id"] for p in pages for v in p["value"]] == [o.id for o in expected[3:]]


def test_top_zero_with_count(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(client, "Observations?$filter=result eq null&$count=true&$top=0")
    assert doc["value"] == []
    assert doc["@iot.count"] == len(city.obs_ids(lambda o: o.result is None))


def test_default_top_is_100(env: tuple[TestClient, City]) -> None:
    client, city = env
    pages = list(follow(client, get(client, "Observations?$select=id")))
    n = len(city.observations)
    assert [len(p["value"]) for p in pages] == [100] * (n // 100) + [n % 100]
    assert [v["@iot.id"] for p in pages for v in p["value"]] == sorted(o.id for o in city.observations)


# ------------------------------------------------------------------ $expand and $select


def test_expand_three_levels_with_options(env: tuple[TestClient, City]) -> None:
    client, city = env
    url = (
        "Locations?$filter=name eq 'Oude Markt'&$select=name"
        "&$expand=Things($select=name;$expand=Datastreams($orderby=name desc;$select=name"
        ";$expand=ObservedProperty($select=name),Observations($filter=result gt 20;$orderby=result desc,id"
        ";$top=2;$skip=1;$select=result;$count=true)))"
    )
    doc = get(client, url)
    [loc] = doc["value"]
    assert set(loc) == {"name", "Things"}
    [thing] = loc["Things"]
    assert thing["name"] == "Air Centrum"
    assert set(thing) == {"name", "Datastreams"}
    assert [d["name"] for d in thing["Datastreams"]] == ["temp Centrum", "status Centrum", "pm10 Centrum"]
    temp, status, pm10 = thing["Datastreams"]
    assert temp["Observations"] == [] and temp["Observations@iot.count"] == 0  # never above 20 °C
    assert status["ObservedProperty"] == {"name": "station status"}
    assert pm10["ObservedProperty"] == {"name": "PM10"}
    assert status["Observations"] == []
    assert status["Observations@iot.count"] == 0
    high = sorted((o for o in city.obs("pm10 Centrum") if o.result > 20), key=lambda o: o.id)
    high.sort(key=lambda o: o.result, reverse=True)
    assert pm10["Observations@iot.count"] == len(high)
    assert pm10["Observations"] == [{"result": o.result} for o in high[1:3]]


def test_expand_path_form_and_filter_on_inner(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client,
        f"Things({city.things['Well Lasonder 7']})?$select=name"
        "&$expand=Datastreams/Observations($filter=result eq null or result eq 'ok';$select=id)",
    )
    got = {d["@iot.id"]: {o["@iot.id"] for o in d["Observations"]} for d in doc["Datastreams"]}
    expected = {
        city.datastreams[n]: city.obs_ids(lambda o: o.result is None or o.result == "ok", n)
        for n in ("level L7", "log L7")
    }
    assert got == expected


def test_expand_with_filter_selecting_nothing_keeps_parents(env: tuple[TestClient, City]) -> None:
    client, _ = env
    doc = get(client, "Things?$expand=Datastreams($filter=name eq 'log L7';$select=name)&$select=name")
    assert {v["name"]: v["Datastreams"] for v in doc["value"]} == {
        th.name: ([{"name": "log L7"}] if th.name == "Well Lasonder 7" else []) for th in THINGS
    }


def test_select_with_nested_expand(env: tuple[TestClient, City]) -> None:
    client, _ = env
    doc = get(
        client,
        "Datastreams?$filter=Thing/name eq 'Air Pathmos'&$orderby=name&$select=name,unitOfMeasurement"
        "&$expand=Thing($select=name,properties),Sensor($select=name)",
    )
    assert doc["value"] == [
        {
            "name": "door Pathmos",
            "unitOfMeasurement": DS["door Pathmos"].unit,
            "Thing": {"name": "Air Pathmos", "properties": {"buurt": "Pathmos", "kind": "air"}},
            "Sensor": {"name": "Status panel"},
        },
        {
            "name": "pm10 Pathmos",
            "unitOfMeasurement": DS["pm10 Pathmos"].unit,
            "Thing": {"name": "Air Pathmos", "properties": {"buurt": "Pathmos", "kind": "air"}},
            "Sensor": {"name": "SDS011"},
        },
    ]


def test_next_link_inside_expand_without_options(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(client, f"Datastreams({city.datastreams['door Pathmos']})?$expand=Observations($top=6;$select=id)")
    first = doc["Observations"]
    assert len(first) == 6
    rest = [
        v["@iot.id"]
        for p in follow(client, {"@iot.nextLink": doc["Observations@iot.nextLink"], "value": []})
        for v in p["value"]
    ]
    assert [v["@iot.id"] for v in first] + rest == sorted(o.id for o in city.obs("door Pathmos"))


def test_next_link_inside_expand_keeps_filter_and_order(env: tuple[TestClient, City]) -> None:
    client, city = env
    url = (
        f"Datastreams({city.datastreams['pm10 Centrum']})"
        "?$expand=Observations($filter=result gt 20;$orderby=result desc,id;$top=4;$select=id)"
    )
    doc = get(client, url)
    expected = sorted((o for o in city.obs("pm10 Centrum") if o.result > 20), key=lambda o: o.id)
    expected.sort(key=lambda o: o.result, reverse=True)
    first = [v["@iot.id"] for v in doc["Observations"]]
    assert first == [o.id for o in expected[:4]]
    start = {"@iot.nextLink": doc["Observations@iot.nextLink"], "value": []}
    rest = [v["@iot.id"] for p in follow(client, start) for v in p["value"]]
    assert first + rest == [o.id for o in expected]


def test_expand_count_and_top_on_to_many(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client,
        "Things?$filter=Datastreams/name eq 'level R12'&$select=name&$expand=Datastreams($count=true"
        ";$expand=Observations($count=true;$top=1;$orderby=phenomenonTime desc;$select=phenomenonTime))",
    )
    [thing] = doc["value"]
    assert thing["Datastreams@iot.count"] == 1
    [ds] = thing["Datastreams"]
    assert ds["Observations@iot.count"] == 40
    assert ds["Observations"] == [{"phenomenonTime": "2026-01-02T15:00:00Z"}]
    assert "Observations@iot.nextLink" in ds


# ------------------------------------------------------------------ $resultFormat=dataArray


def test_data_array(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client,
        "Observations?$filter=Datastream/name eq 'door Pathmos'&$orderby=phenomenonTime"
        "&$resultFormat=dataArray&$select=id,result&$count=true",
    )
    items = sorted(city.obs("door Pathmos"), key=lambda o: o.start)
    assert doc["@iot.count"] == 20
    [group] = doc["value"]
    assert group["Datastream@iot.navigationLink"].endswith(f"/Datastreams({city.datastreams['door Pathmos']})")
    assert group["components"] == ["id", "result"]
    assert group["dataArray@iot.count"] == 20
    assert group["dataArray"] == [[o.id, o.result] for o in items]


def test_data_array_groups_per_datastream(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client, "Observations?$filter=phenomenonTime eq 2026-01-01T05:00:00Z&$resultFormat=dataArray&$select=result"
    )
    got = {g["Datastream@iot.navigationLink"].rsplit("(", 1)[1].rstrip(")"): g["dataArray"] for g in doc["value"]}
    expected: dict[str, list[list[Any]]] = {}
    for o in sorted(city.observations, key=lambda o: o.id):
        if o.start == o.last == T5:
            expected.setdefault(str(city.datastreams[o.ds]), []).append([o.result])
    assert got == expected


def test_data_array_inside_expand(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(
        client,
        "Datastreams?$filter=name eq 'count Oldenzaalsestraat'&$select=name"
        "&$expand=Observations($resultFormat=dataArray;$select=phenomenonTime,result;$top=3;$orderby=phenomenonTime;$count=true)",
    )
    [ds] = doc["value"]
    items = sorted(city.obs("count Oldenzaalsestraat"), key=lambda o: o.start)[:3]
    [group] = ds["Observations"]
    assert ds["Observations@iot.count"] == 24
    assert group["components"] == ["phenomenonTime", "result"]
    assert group["dataArray"] == [[o.phenomenon_text(), o.result] for o in items]


def test_data_array_next_link(env: tuple[TestClient, City]) -> None:
    client, city = env
    doc = get(client, "Observations?$filter=Datastream/name eq 'level R40'&$resultFormat=dataArray&$select=id&$top=15")
    rows = [row[0] for page in follow(client, doc) for g in page["value"] for row in g["dataArray"]]
    assert rows == sorted(o.id for o in city.obs("level R40"))


# ------------------------------------------------------------------ 400s


@dataclass(frozen=True)
class Bad:
    query: str
    option: str
    position: int | None
    words: tuple[str, ...] = ()
    bug: str | None = None


BAD: list[Bad] = [
    Bad("$filter=name eq", "$filter", 7, ("end of input",)),
    Bad("$filter=name eq 'Air", "$filter", 8, ("unterminated string",)),
    Bad("$filter=(name eq 'a'", "$filter", 0, ("parenthesis",)),
    Bad("$filter=name eq 'a')", "$filter", 11, ("parenthesis",)),
    Bad("$filter=name = 'a'", "$filter", 5, ("eq",)),
    Bad("$filter=name eq 'a' or", "$filter", 14, ("end of input",)),
    Bad("$filter=name eq 'a' and and", "$filter", 16, ("and",)),
    Bad("$filter=foo eq 1", "$filter", 0, ("foo",)),
    Bad("$filter=name eq 'a' and bar eq 2", "$filter", 16, ("bar",)),
    Bad("$filter=Locations eq 1", "$filter", 0, ("relation",)),
    Bad("$filter=length(name)", "$filter", 0, ("condition",)),
    # not binds tighter than eq (OData's precedence), so this negates a string.
    Bad("$filter=not name eq 'a'", "$filter", 4, ("condition",)),
    Bad("$filter=startswith(3, 'a')", "$filter", 0, ("startswith", "text")),
    Bad("$filter=name add 1 eq 2", "$filter", 0, ("number",)),
    Bad("$filter=year(name) eq 2020", "$filter", 0, ("year", "date-time")),
    Bad("$filter=substring(name) eq 'a'", "$filter", 0, ("substring", "argument")),
    Bad("$filter=sbustringof('a', name)", "$filter", 0, ("unknown function", "substringof")),
    Bad("$filter=geo.distance(name, geography'POINT(1 2)') lt 1", "$filter", 0, ("geometry",)),
    Bad("$filter=name eq 2026-13-01", "$filter", 8, ("date",)),
    Bad("$filter=name eq 'a' and st_within(location, geography'POINT(1 2')", "$filter", None, ()),
    Bad("$filter=name gt 3", "$filter", 0, ("string",)),
    Bad("$filter=name eq true", "$filter", 0, ("string",)),
    Bad("$filter=3 lt name", "$filter", 0, ("string",)),
    Bad("$filter=name eq 'a' or tolower(name) ne 3", "$filter", 15, ("string",)),
    Bad("$filter=description gt 2026-01-01T00:00:00Z", "$filter", 0, ("string",)),
    Bad("$orderby=Datastreams/name", "$orderby", 0, ("collection",)),
    Bad("$orderby=name sideways", "$orderby", 5, ()),
    Bad("$expand=Foo", "$expand", 0, ("Foo",)),
    Bad("$expand=Datastreams($filter=name gt)", "$expand", 27, ("')'",)),
    Bad("$expand=Datastreams($filter=nme eq 'x')", "$expand", 20, ("nme",)),
    Bad("$expand=Datastreams($filter=name gt 3)", "$expand", 20, ("string",)),
    Bad("$expand=Datastreams($orderby=nme)", "$expand", 21, ("nme",)),
    Bad(
        "$expand=Datastreams($expand=Observations($filter=length(result) eq 1 and year(result) eq 1))",
        "$expand",
        65,
        ("year",),
    ),
    Bad("$expand=Datastreams($select=nme)", "$expand", None, ("nme",)),
    Bad("$expand=Datastreams($top=x)", "$expand", 17, ()),
    Bad("$top=-1", "$top", 0, ("non-negative",)),
    Bad("$select=nothing", "$select", None, ("nothing",)),
    Bad("$resultFormat=dataArray", "$resultFormat", None, ("Observations",)),
    Bad("$filtre=name eq 'a'", "$filtre", None, ("$filter",)),
]


@pytest.mark.parametrize(
    "bad",
    [pytest.param(b, marks=pytest.mark.xfail(strict=True, reason=f"bug: {b.bug}")) if b.bug else b for b in BAD],
    ids=[b.query for b in BAD],
)
def test_bad_query_is_400_naming_the_problem(env: tuple[TestClient, City], bad: Bad) -> None:
    client, _ = env
    key, _, value = bad.query.partition("=")
    doc = get(client, f"Things?{key}={quote(value)}", status=400)
    assert doc["option"] == bad.option
    if bad.position is not None:
        assert doc["position"] == bad.position, doc
    for word in bad.words:
        assert word.lower() in doc["message"].lower(), doc
