"""``stadsdata erase --owner X`` and ``erase_owner``: the right to erasure.

A small city: resident X (whose id holds a quote, to test the OData quoting) with two homes, resident Y, and a
public station that carries one Datastream of X. After the erasure nothing of X is readable through any path
or left in any table, and everything of Y and the public is there as before.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.access.erase import ErasureReport, erase_owner, odata_string
from stadsdata.cli import main
from stadsdata.settings import Settings
from tests import fixtures as f
from tests.conftest import BASE

X = "resident-o'neill"
Y = "resident-y"
MARK = "erase-me"
"""In the name of every entity of X that must go (Sensors and ObservedProperties stay: they do not carry it)."""
COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"

SETS = (
    "Things",
    "Locations",
    "HistoricalLocations",
    "Datastreams",
    "MultiDatastreams",
    "Sensors",
    "ObservedProperties",
    "Observations",
    "FeaturesOfInterest",
)
EXPAND = {
    "Things": "Locations,HistoricalLocations,Datastreams($expand=Observations),MultiDatastreams($expand=Observations)",
    "Locations": "Things,HistoricalLocations",
    "HistoricalLocations": "Thing,Locations",
    "Datastreams": "Thing,Sensor,ObservedProperty,Observations($expand=FeatureOfInterest)",
    "MultiDatastreams": "Thing,Sensor,ObservedProperties,Observations($expand=FeatureOfInterest)",
    "Sensors": "Datastreams,MultiDatastreams",
    "ObservedProperties": "Datastreams,MultiDatastreams",
    "Observations": "Datastream,MultiDatastream,FeatureOfInterest",
    "FeaturesOfInterest": "Observations",
}
SELF_LINK = re.compile(r"/v1\.1/(\w+)\((\d+)\)$")


def _owned(name: str, owner: str | None, visibility: str = "personal") -> dict[str, Any]:
    props: dict[str, Any] = {"visibility": visibility}
    if owner is not None:
        props["owner"] = owner
    return {"name": name, "description": name, "properties": props}


def _observations(*values: float, foi: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for i, v in enumerate(values):
        obs: dict[str, Any] = {"phenomenonTime": f"2026-03-0{i + 1}T10:00:00Z", "result": v}
        if foi is not None:
            obs["FeatureOfInterest"] = foi
        out.append(obs)
    return out


def _datastream(name: str, sensor: int, observed_property: dict[str, Any] | int) -> dict[str, Any]:
    prop = {"@iot.id": observed_property} if isinstance(observed_property, int) else observed_property
    return f.datastream(name, Sensor={"@iot.id": sensor}, ObservedProperty=prop)


def _feature(name: str) -> dict[str, Any]:
    return {"name": name, "description": name, "encodingType": "application/geo+json", "feature": f.POINT}


def _post(client: TestClient, path: str, body: dict[str, Any]) -> int:
    r = client.post(f"{BASE}/{path}", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["@iot.id"])


def _get(client: TestClient, path: str, **params: str) -> dict[str, Any]:
    r = client.get(f"{BASE}/{path}", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _ids(client: TestClient, path: str, **params: str) -> set[int]:
    return {e["@iot.id"] for e in _get(client, path, **{"$top": "10000", "$select": "id", **params})["value"]}


@dataclass
class City:
    """What was built, and what the erasure of X must remove and keep."""

    sensor: int = 0
    shared_location: int = 0
    public_thing: int = 0
    removed: dict[str, set[int]] = field(default_factory=dict)
    kept: dict[str, set[int]] = field(default_factory=dict)
    observations: int = 0


def build(client: TestClient) -> City:
    city = City()
    city.sensor = _post(client, "Sensors", f.sensor("shared transducer model"))
    op = _post(client, "ObservedProperties", f.observed_property("groundwater level"))
    temperature = _post(client, "ObservedProperties", f.observed_property("air temperature"))

    # Resident Y, with the Location X's second home shares (a courtyard) and a FeatureOfInterest X uses too.
    y_thing = _post(
        client,
        "Things",
        {
            **_owned("Y home", Y),
            "Locations": [f.location("shared courtyard")],
            "Datastreams": [
                {
                    **f.datastream("Y level", Sensor={"@iot.id": city.sensor}, ObservedProperty={"@iot.id": op}),
                    **_owned("Y level", Y),
                    "Observations": _observations(1.0, 1.1, foi=_feature("shared well field"))
                    + _observations(1.2),  # derived from the courtyard
                }
            ],
        },
    )
    city.shared_location = next(iter(_ids(client, f"Things({y_thing})/Locations")))
    shared_foi = next(iter(_ids(client, "FeaturesOfInterest", **{"$filter": "name eq 'shared well field'"})))

    # The public station, with a Datastream of X on it.
    city.public_thing = _post(
        client,
        "Things",
        {
            **_owned("public station", None, "public"),
            "Locations": [f.location("market square")],
            "Datastreams": [
                {
                    **f.datastream("public level", Sensor={"@iot.id": city.sensor}, ObservedProperty={"@iot.id": op}),
                    "Observations": _observations(5.0),
                },
                {
                    **_datastream(f"{MARK} X on station", city.sensor, f.observed_property("noise")),
                    **_owned(f"{MARK} X on station", X),
                    "Observations": _observations(6.0, 6.1, foi=_feature(f"{MARK} X balcony")),
                },
            ],
        },
    )  # fmt: skip

    # X's first home: its own Location, a Datastream (own FeatureOfInterest, and the shared one), a
    # MultiDatastream (FeaturesOfInterest derived from the home's Location) with a Sensor of its own.
    x_home1 = _post(
        client,
        "Things",
        {
            **_owned(f"{MARK} X home 1", X),
            "Locations": [f.location(f"{MARK} X home 1 garden")],
            "Datastreams": [
                {
                    **_datastream(f"{MARK} X level", city.sensor, op),
                    **_owned(f"{MARK} X level", X),
                    "Observations": _observations(2.0, 2.1, foi=_feature(f"{MARK} X cellar"))
                    + _observations(2.2, foi={"@iot.id": shared_foi}),
                }
            ],
            "MultiDatastreams": [
                {
                    **_owned(f"{MARK} X indoor climate", X),
                    "unitOfMeasurements": [f.UNIT_M, {"name": "degree Celsius", "symbol": "degC", "definition": "x"}],
                    "observationType": COMPLEX,
                    "multiObservationDataTypes": [f.MEASUREMENT, f.MEASUREMENT],
                    "Sensor": f.sensor("climate logger model"),
                    "ObservedProperties": [{"@iot.id": op}, {"@iot.id": temperature}],
                    "Observations": [
                        {"phenomenonTime": "2026-03-01T10:00:00Z", "result": [0.5, 20.1]},
                        {"phenomenonTime": "2026-03-02T10:00:00Z", "result": [0.6, 20.4]},
                    ],
                }
            ],
        },
    )  # fmt: skip

    # X's second home: first at a Location of its own, then moved to the courtyard and a new one (the first
    # Location is then only in its HistoricalLocations). Its Datastream has no owner of its own.
    x_home2 = _post(
        client,
        "Things",
        {
            **_owned(f"{MARK} X home 2", X),
            "Locations": [f.location(f"{MARK} X old flat")],
            "Datastreams": [
                {
                    **_datastream(f"{MARK} X home 2 level", city.sensor, op),
                    "Observations": _observations(3.0, 3.1),  # derived from the old flat
                }
            ],
        },
    )  # fmt: skip
    r = client.patch(
        f"{BASE}/Things({x_home2})",
        json={"Locations": [{"@iot.id": city.shared_location}, f.location(f"{MARK} X home 2 porch")]},
    )
    assert r.status_code == 200, r.text
    r = client.post(f"{BASE}/Things({x_home2})/Datastreams", json={
        **_datastream(f"{MARK} X home 2 later", city.sensor, op),
        **_owned(f"{MARK} X home 2 later", X),
    })  # fmt: skip
    assert r.status_code == 201, r.text
    later = int(r.json()["@iot.id"])
    r = client.post(f"{BASE}/Datastreams({later})/Observations", json=_observations(4.0)[0])  # derived again
    assert r.status_code == 201, r.text

    # What must go: found here through the API, independently of erase_owner.
    things = {x_home1, x_home2}
    datastreams = _ids(client, "Datastreams", **{"$filter": f"startswith(name, '{MARK}')"})
    multi = _ids(client, "MultiDatastreams", **{"$filter": f"startswith(name, '{MARK}')"})
    assert len(datastreams) == 4 and len(multi) == 1
    observations: set[int] = set()
    for ds in datastreams:
        observations |= _ids(client, f"Datastreams({ds})/Observations")
    for mds in multi:
        observations |= _ids(client, f"MultiDatastreams({mds})/Observations")
    history: set[int] = set()
    for thing in things:
        history |= _ids(client, f"Things({thing})/HistoricalLocations")
    locations = _ids(client, "Locations", **{"$filter": f"startswith(name, '{MARK}')"})
    assert len(locations) == 3
    features_used: dict[int, set[int]] = {}
    for foi in _get(client, "FeaturesOfInterest", **{"$top": "10000", "$expand": "Observations($select=id)"})["value"]:
        features_used[foi["@iot.id"]] = {o["@iot.id"] for o in foi["Observations"]}
    features = {foi for foi, obs in features_used.items() if obs and obs <= observations}
    shared_features = {foi for foi, obs in features_used.items() if obs & observations and obs - observations}
    assert shared_foi in shared_features
    assert all(name_has_mark(client, "FeaturesOfInterest", foi) for foi in features)
    city.removed = {
        "Things": things,
        "Datastreams": datastreams,
        "MultiDatastreams": multi,
        "HistoricalLocations": history,
        "Locations": locations,
        "FeaturesOfInterest": features,
        "Observations": observations,
    }
    city.kept = {"Locations": {city.shared_location}, "FeaturesOfInterest": shared_features}
    city.observations = len(observations)
    assert city.observations == 10
    return city


def name_has_mark(client: TestClient, entity_set: str, id_: int) -> bool:
    return MARK in _get(client, f"{entity_set}({id_})")["name"]


def snapshot(client: TestClient) -> dict[str, set[int]]:
    """The ids of every entity set."""
    return {name: _ids(client, name) for name in SETS}


def check_report(report: ErasureReport, city: City, dry_run: bool) -> None:
    assert report.owner == X and report.dry_run is dry_run
    assert {k: set(v) for k, v in report.removed.items() if v} == {
        k: v for k, v in city.removed.items() if k != "Observations"
    }
    assert report.observations == city.observations
    assert {k: set(v) for k, v in report.kept.items() if v} == city.kept
    text = "\n".join(report.lines())
    assert ("would be removed" in text) is dry_run
    assert f"Things: 2 {'would be removed' if dry_run else 'removed'} (ids " in text


def _walk(doc: Any, found: set[tuple[str, int]]) -> None:
    if isinstance(doc, dict):
        link = doc.get("@iot.selfLink")
        if isinstance(link, str):
            m = SELF_LINK.search(link)
            assert m is not None, link
            found.add((m.group(1), int(m.group(2))))
        for value in doc.values():
            _walk(value, found)
    elif isinstance(doc, list):
        for value in doc:
            _walk(value, found)


def _sql_count(settings: Settings, sql: str, ids: set[int]) -> int:
    """``sql`` with ``{ids}`` replaced by the ids (integers only) as a list."""
    text = sql.replace("{ids}", ", ".join(str(int(i)) for i in ids) or "NULL")
    if settings.db.startswith("postgresql"):
        with psycopg.connect(settings.db) as conn:
            row = conn.execute(text).fetchone()
    else:
        with sqlite3.connect(settings.db) as conn:
            row = conn.execute(text).fetchone()
    assert row is not None
    return int(row[0])


def check_erased(client: TestClient, settings: Settings, city: City, before: dict[str, set[int]]) -> None:
    removed = city.removed
    # Every entity set, with everything around it expanded: nothing of X by name or by id.
    for name in SETS:
        r = client.get(f"{BASE}/{name}", params={"$top": "10000", "$expand": EXPAND[name]})
        assert r.status_code == 200, r.text
        assert MARK not in r.text, (name, r.text)
        assert X not in r.text and "o''neill" not in r.text
        shown: set[tuple[str, int]] = set()
        _walk(r.json(), shown)
        gone = {(k, i) for k, ids in removed.items() for i in ids}
        assert not shown & gone, (name, shown & gone)
    # Nothing is found by the owner.
    for name in ("Things", "Datastreams", "MultiDatastreams"):
        assert _get(client, name, **{"$filter": f"properties/owner eq {odata_string(X)}"})["value"] == []
        assert _get(client, name, **{"$filter": "startswith(properties/owner, 'resident-o')"})["value"] == []
    # Every removed entity, and everything reached through it, is not found.
    for name, ids in removed.items():
        for id_ in ids:
            assert client.get(f"{BASE}/{name}({id_})").status_code == 404, (name, id_)
    for name in ("Datastreams", "MultiDatastreams"):
        for id_ in removed[name]:
            assert client.get(f"{BASE}/{name}({id_})/Observations").status_code == 404
    for id_ in removed["Things"]:
        for nav in ("Locations", "HistoricalLocations", "Datastreams", "MultiDatastreams"):
            assert client.get(f"{BASE}/Things({id_})/{nav}").status_code == 404
    # Nothing is left in the tables, the link tables included.
    for sql, ids in (
        ("SELECT count(*) FROM observations WHERE datastream_id IN ({ids})", removed["Datastreams"]),
        ("SELECT count(*) FROM observations WHERE multi_datastream_id IN ({ids})", removed["MultiDatastreams"]),
        ("SELECT count(*) FROM observations WHERE id IN ({ids})", removed["Observations"]),
        ("SELECT count(*) FROM observations WHERE feature_of_interest_id IN ({ids})", removed["FeaturesOfInterest"]),
        ("SELECT count(*) FROM things WHERE id IN ({ids})", removed["Things"]),
        ("SELECT count(*) FROM datastreams WHERE id IN ({ids}) OR thing_id IN ({ids})", removed["Datastreams"]),
        ("SELECT count(*) FROM datastreams WHERE thing_id IN ({ids})", removed["Things"]),
        ("SELECT count(*) FROM multi_datastreams WHERE id IN ({ids})", removed["MultiDatastreams"]),
        ("SELECT count(*) FROM multi_datastreams WHERE thing_id IN ({ids})", removed["Things"]),
        ("SELECT count(*) FROM historical_locations WHERE id IN ({ids})", removed["HistoricalLocations"]),
        ("SELECT count(*) FROM historical_locations WHERE thing_id IN ({ids})", removed["Things"]),
        ("SELECT count(*) FROM locations WHERE id IN ({ids})", removed["Locations"]),
        ("SELECT count(*) FROM features_of_interest WHERE id IN ({ids})", removed["FeaturesOfInterest"]),
        ("SELECT count(*) FROM thing_locations WHERE thing_id IN ({ids})", removed["Things"]),
        ("SELECT count(*) FROM thing_locations WHERE location_id IN ({ids})", removed["Locations"]),
        ("SELECT count(*) FROM location_historical_locations WHERE location_id IN ({ids})", removed["Locations"]),
        (
            "SELECT count(*) FROM location_historical_locations WHERE historical_location_id IN ({ids})",
            removed["HistoricalLocations"],
        ),
        (
            "SELECT count(*) FROM multi_datastream_observed_properties WHERE multi_datastream_id IN ({ids})",
            removed["MultiDatastreams"],
        ),
        ("SELECT count(*) FROM things WHERE owner IS NOT NULL AND owner LIKE 'resident-o%'", set()),
        ("SELECT count(*) FROM datastreams WHERE owner IS NOT NULL AND owner LIKE 'resident-o%'", set()),
        ("SELECT count(*) FROM multi_datastreams WHERE owner IS NOT NULL AND owner LIKE 'resident-o%'", set()),
    ):
        assert _sql_count(settings, sql, ids) == 0, sql
    # Everything else is still there, the shared Location, Sensor and FeatureOfInterest included.
    after = snapshot(client)
    for name in SETS:
        assert after[name] == before[name] - removed.get(name, set()), name
    assert city.shared_location in after["Locations"] and city.sensor in after["Sensors"]
    assert city.kept["FeaturesOfInterest"] <= after["FeaturesOfInterest"]
    assert _get(client, f"Things({city.public_thing})/Datastreams", **{"$count": "true"})["@iot.count"] == 1
    y = _get(client, "Things", **{"$filter": "properties/owner eq 'resident-y'", "$expand": "Datastreams,Locations"})
    assert len(y["value"]) == 1
    assert [loc["@iot.id"] for loc in y["value"][0]["Locations"]] == [city.shared_location]
    y_ds = y["value"][0]["Datastreams"][0]["@iot.id"]
    assert _get(client, f"Datastreams({y_ds})/Observations", **{"$count": "true"})["@iot.count"] == 3


def test_erase_owner(client: TestClient, settings: Settings) -> None:
    city = build(client)
    service = client.app.state.service  # type: ignore[attr-defined]
    before = snapshot(client)

    dry = client.portal.call(lambda: erase_owner(service, X, dry_run=True))  # type: ignore[union-attr]
    check_report(dry, city, dry_run=True)
    assert snapshot(client) == before  # a dry run removes nothing

    report = client.portal.call(lambda: erase_owner(service, X))  # type: ignore[union-attr]
    check_report(report, city, dry_run=False)
    check_erased(client, settings, city, before)

    again = client.portal.call(lambda: erase_owner(service, X))  # type: ignore[union-attr]
    assert not any(again.removed.values()) and again.observations == 0
    assert again.lines()[-1] == f"nothing of owner {X!r} was found: nothing removed"
    assert snapshot(client) == {name: before[name] - city.removed.get(name, set()) for name in SETS}


def test_erase_command(client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    city = build(client)
    before = snapshot(client)
    capsys.readouterr()

    assert main(["erase", "--owner", X, "--dry-run", "--db", settings.db]) == 0
    out = capsys.readouterr().out
    assert "would be removed" in out
    things = ", ".join(str(i) for i in sorted(city.removed["Things"]))
    assert f"Things: 2 would be removed (ids {things})" in out
    assert f"Observations: {city.observations} would be removed" in out
    assert f"Locations: 1 kept, still used by others (ids {city.shared_location})" in out
    assert snapshot(client) == before

    assert main(["erase", "--owner", X, "--db", settings.db]) == 0
    out = capsys.readouterr().out
    assert "would be removed" not in out
    assert f"Things: 2 removed (ids {things})" in out
    assert f"Observations: {city.observations} removed" in out
    check_erased(client, settings, city, before)

    assert main(["erase", "--owner", "resident-nobody", "--db", settings.db]) == 0
    assert capsys.readouterr().out.strip() == "nothing of owner 'resident-nobody' was found: nothing removed"
    assert snapshot(client) == {name: before[name] - city.removed.get(name, set()) for name in SETS}


def test_report_lines() -> None:
    report = ErasureReport(
        "r1", True, {"Things": [9, 4], "Datastreams": [], "Locations": [7]}, 12, {"FeaturesOfInterest": [3]}
    )
    assert report.lines() == [
        "Things: 2 would be removed (ids 4, 9)",
        "Locations: 1 would be removed (ids 7)",
        "Observations: 12 would be removed with their Datastreams and MultiDatastreams",
        "FeaturesOfInterest: 1 kept, still used by others (ids 3)",
        "dry run: nothing was removed",
    ]
    assert ErasureReport("r1", False, {}, 0, {}).lines() == ["nothing of owner 'r1' was found: nothing removed"]
    assert odata_string("o'neill") == "'o''neill'"
