"""The access matrix: every caller × every visibility × every path to data, against the plain rule (conftest).

Each test covers one kind of path for one caller over every Thing of the city (two projects × public, internal,
personal) and every entity set, and lists every difference from the rule: zero leaks, and nothing hidden that
should be seen. Runs on both stores.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest

from tests.access.conftest import CALLERS, ENTITY_SETS, Who, World, can_change, can_see

ADMIN = next(w for w in CALLERS if w.name == "admin-everywhere")
callers = pytest.mark.parametrize("who", CALLERS, ids=lambda w: w.name)

# (entity set, relation, target entity set, to many)
NAVIGATION = (
    ("Things", "Datastreams", "Datastreams", True),
    ("Things", "MultiDatastreams", "MultiDatastreams", True),
    ("Things", "Locations", "Locations", True),
    ("Things", "HistoricalLocations", "HistoricalLocations", True),
    ("Locations", "Things", "Things", True),
    ("Locations", "HistoricalLocations", "HistoricalLocations", True),
    ("HistoricalLocations", "Thing", "Things", False),
    ("HistoricalLocations", "Locations", "Locations", True),
    ("Datastreams", "Thing", "Things", False),
    ("Datastreams", "Sensor", "Sensors", False),
    ("Datastreams", "ObservedProperty", "ObservedProperties", False),
    ("Datastreams", "Observations", "Observations", True),
    ("MultiDatastreams", "ObservedProperties", "ObservedProperties", True),
    ("MultiDatastreams", "Observations", "Observations", True),
    ("Sensors", "Datastreams", "Datastreams", True),
    ("Sensors", "MultiDatastreams", "MultiDatastreams", True),
    ("ObservedProperties", "Datastreams", "Datastreams", True),
    ("ObservedProperties", "MultiDatastreams", "MultiDatastreams", True),
    ("Observations", "Datastream", "Datastreams", False),
    ("Observations", "MultiDatastream", "MultiDatastreams", False),
    ("Observations", "FeatureOfInterest", "FeaturesOfInterest", False),
    ("FeaturesOfInterest", "Observations", "Observations", True),
)


def ids_of(doc: Any) -> set[int]:
    if "value" in doc:
        return {e["@iot.id"] for e in doc["value"]}
    return {doc["@iot.id"]} if "@iot.id" in doc else set()


def check(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} differences from the rule:\n" + "\n".join(problems[:40])


@callers
def test_single_entities(world: World, who: Who) -> None:
    problems = []
    for es in ENTITY_SETS:
        visible = world.expected(who, es)
        for i in sorted(world.every(es)):
            status = world.get(who, f"{es}({i})").status_code
            want = 200 if i in visible else 404
            if status != want:
                problems.append(f"{es}({i}): {status}, expected {want}")
            prop = world.get(who, f"{es}({i})?$select=id").status_code
            if prop != want:
                problems.append(f"{es}({i})?$select=id: {prop}, expected {want}")
    check(problems)


@callers
def test_collections_and_counts(world: World, who: Who) -> None:
    problems = []
    for es in ENTITY_SETS:
        want = world.expected(who, es)
        doc = world.get(who, f"{es}?$top=1000&$count=true").json()
        if ids_of(doc) != want:
            problems.append(f"{es}: {sorted(ids_of(doc))}, expected {sorted(want)}")
        if doc["@iot.count"] != len(want):
            problems.append(f"{es} $count: {doc['@iot.count']}, expected {len(want)}")
        refs = world.get(who, f"{es}/$ref?$top=1000").json()
        got = {int(r["@iot.selfLink"].rsplit("(", 1)[1].rstrip(")")) for r in refs["value"]}
        if got != want:
            problems.append(f"{es}/$ref: {sorted(got)}, expected {sorted(want)}")
    check(problems)


@callers
def test_navigation(world: World, who: Who) -> None:
    problems = []
    for es, rel, target, many in NAVIGATION:
        visible_parents = world.expected(who, es)
        visible_targets = world.expected(who, target)
        for parent in sorted(world.every(es)):
            path = f"{es}({parent})/{rel}"
            r = world.get(who, path + ("?$top=1000" if many else ""))
            if parent not in visible_parents:
                if r.status_code != 404:
                    problems.append(f"{path}: {r.status_code} for a parent the caller may not see, expected 404")
                continue
            truth = ids_of(world.get(ADMIN, path + ("?$top=1000" if many else "")).json())
            want = truth & visible_targets
            if many:
                got = ids_of(r.json()) if r.status_code == 200 else {-r.status_code}
            else:
                # What a visible entity refers to is visible.
                got = ids_of(r.json()) if r.status_code == 200 else set()
                if truth and not want:
                    problems.append(f"{path}: the target of a visible entity is hidden (the rule is broken)")
            if got != want:
                problems.append(f"{path}: {sorted(got)}, expected {sorted(want)}")
    check(problems)


@callers
def test_expand_at_depth(world: World, who: Who) -> None:
    """Every entity inside a deep $expand is one the caller may see, and none it may see is left out."""
    problems = []
    expand = (
        "Datastreams($expand=Observations($expand=FeatureOfInterest),Sensor,ObservedProperty),"
        "MultiDatastreams($expand=Observations,ObservedProperties),Locations($expand=HistoricalLocations),"
        "HistoricalLocations($expand=Locations)"
    )
    doc = world.get(who, f"Things?$top=1000&$expand={quote(expand)}").json()
    seen: dict[str, set[int]] = {}

    def walk(entity: dict[str, Any], es: str) -> None:
        seen.setdefault(es, set()).add(entity["@iot.id"])
        for key, value in entity.items():
            target = {"Datastreams": "Datastreams", "Observations": "Observations", "FeatureOfInterest":
                      "FeaturesOfInterest", "Sensor": "Sensors", "ObservedProperty": "ObservedProperties",
                      "MultiDatastreams": "MultiDatastreams", "ObservedProperties": "ObservedProperties",
                      "Locations": "Locations", "HistoricalLocations": "HistoricalLocations"}.get(key)  # fmt: skip
            if target is None:
                continue
            for child in value if isinstance(value, list) else [value] if isinstance(value, dict) else []:
                walk(child, target)

    for thing in doc["value"]:
        walk(thing, "Things")
    for es, got in seen.items():
        leaked = got - world.expected(who, es)
        if leaked:
            problems.append(f"$expand shows {es} {sorted(leaked)} the caller may not see")
    for es in ("Things", "Datastreams", "Observations", "MultiDatastreams"):
        missing = world.expected(who, es) - seen.get(es, set())
        if missing:
            problems.append(f"$expand leaves out {es} {sorted(missing)} the caller may see")
    check(problems)


@callers
def test_filters_through_relations_do_not_reveal_hidden_rows(world: World, who: Who) -> None:
    """``Things?$filter=Datastreams/name eq 'x'`` finds a Thing only through a Datastream the caller may see."""
    problems = []
    probes = (
        ("Things", "Datastreams/name", "Datastreams"),
        ("Things", "MultiDatastreams/name", "MultiDatastreams"),
        ("Sensors", "Datastreams/name", "Datastreams"),
        ("ObservedProperties", "Datastreams/name", "Datastreams"),
        ("Locations", "Things/name", "Things"),
        ("FeaturesOfInterest", "Observations/Datastream/name", "Datastreams"),
    )
    for site in world.sites:
        for es, member, kind in probes:
            name = site.names.get(kind)
            if name is None:
                continue
            flt = quote(f"{member} eq '{name}'")
            got = ids_of(world.get(who, f"{es}?$filter={flt}&$top=1000").json())
            truth = ids_of(world.get(ADMIN, f"{es}?$filter={flt}&$top=1000").json())
            assert truth, f"{es}?$filter={member} eq '{name}' finds nothing even for an admin"
            want = truth & world.expected(who, es) if can_see(who, site.project, site.visibility) else set()
            if got != want:
                problems.append(f"{es}?$filter={member} eq '{name}': {sorted(got)}, expected {sorted(want)}")
    check(problems)


@callers
def test_pages_data_arrays_aggregates_and_values(world: World, who: Who) -> None:
    problems = []
    # Every page of a listing, through the nextLinks.
    got: set[int] = set()
    url: str | None = "/v1.1/Observations?$top=2"
    while url:
        doc = world.client.get(url, headers=world.headers(who)).json()
        got |= ids_of(doc)
        url = doc.get("@iot.nextLink")
    if got != world.expected(who, "Observations"):
        problems.append(f"Observations by pages: {sorted(got)}, expected {sorted(world.expected(who, 'Observations'))}")
    for site in world.sites:
        seen = can_see(who, site.project, site.visibility)
        ds = site.ids["Datastreams"][0]
        r = world.get(who, f"Datastreams({ds})/Observations?$resultFormat=dataArray")
        if (r.status_code == 200) != seen:
            problems.append(f"dataArray of Datastreams({ds}): {r.status_code}")
        r = world.get(who, f"Datastreams({ds})/Observations?$apply=aggregate($count as n)")
        n = len(ids_of(world.get(ADMIN, f"Datastreams({ds})/Observations").json()))
        if seen and (r.status_code != 200 or r.json()["value"] != [{"n": n}]):
            problems.append(f"$apply on Datastreams({ds}): {r.status_code} {r.text[:100]}")
        if not seen and r.status_code != 404:
            problems.append(f"$apply on hidden Datastreams({ds}): {r.status_code}, expected 404")
        r = world.get(who, f"Datastreams({ds})/name/$value")
        if r.status_code != (200 if seen else 404):
            problems.append(f"Datastreams({ds})/name/$value: {r.status_code}")
    check(problems)


@callers
def test_batch(world: World, who: Who) -> None:
    things = sorted(world.every("Things"))
    body = {"requests": [{"id": str(t), "method": "get", "url": f"Things({t})"} for t in things]}
    answer = world.client.post("/v1.1/$batch", json=body, headers=world.headers(who)).json()
    statuses = {int(r["id"]): r["status"] for r in answer["responses"]}
    want = {t: 200 if t in world.expected(who, "Things") else 404 for t in things}
    assert statuses == want


@callers
def test_basic_authentication_is_the_same_caller(world: World, who: Who) -> None:
    if not who.token:
        pytest.skip("anonymous")
    basic = base64.b64encode(f"x:{world.tokens[who.name]}".encode()).decode()
    doc = world.client.get("/v1.1/Things?$top=1000", headers={"Authorization": f"Basic {basic}"}).json()
    assert ids_of(doc) == world.expected(who, "Things")


@callers
def test_changes(world_settings: Any, who: Who) -> None:
    """PATCH, POST, DELETE, visibility changes, CreateObservations and $batch change sets, per Thing."""
    from tests.access.conftest import build_world

    for w in build_world(world_settings(f"c{CALLERS.index(who)}")):
        problems = []
        h = w.headers(who)
        c = w.client
        denied_anonymous = 401 if not who.token else None
        for site in w.sites:
            if site.inner:
                continue
            seen = can_see(who, site.project, site.visibility)
            change = can_change(who, site.project, site.visibility)
            admin = change and who.role(site.project) is not None and who.role(site.project) >= 3  # type: ignore[operator]
            thing, ds = site.ids["Things"][0], site.ids["Datastreams"][0]
            obs = site.ids["Observations"][0]

            def status(ok: int, change: bool = change, seen: bool = seen, anon: int | None = denied_anonymous) -> int:
                return anon or (ok if change else 403 if seen else 404)

            r = c.patch(f"/v1.1/Things({thing})", json={"description": "checked"}, headers=h)
            if r.status_code != status(200):
                problems.append(f"PATCH Things({thing}) [{site.project} {site.visibility}]: {r.status_code} {r.text}")
            r = c.post(f"/v1.1/Datastreams({ds})/Observations", json={"result": 9}, headers=h)
            if r.status_code != status(201):
                problems.append(f"POST Datastreams({ds})/Observations: {r.status_code} {r.text}")
            r = c.delete(f"/v1.1/Observations({obs})", headers=h)
            if r.status_code != status(200):
                problems.append(f"DELETE Observations({obs}): {r.status_code} {r.text}")
            # Making a Datastream public is for admins of its project.
            props = {"visibility": "public"}
            r = c.patch(f"/v1.1/Datastreams({ds})", json={"properties": props}, headers=h)
            want = denied_anonymous or (200 if admin else 403 if seen else 404)
            if site.visibility != "public" and r.status_code != want:  # (public to public changes nothing)
                problems.append(f"PATCH Datastreams({ds}) visibility: {r.status_code}, expected {want}: {r.text}")
            dataarray = [{"Datastream": {"@iot.id": ds}, "components": ["result"], "dataArray": [[1.0]]}]
            r = c.post("/v1.1/CreateObservations", json=dataarray, headers=h)
            if who.token:
                created = r.status_code == 201 and not r.json()[0].startswith("error")
                if created != change:
                    problems.append(f"CreateObservations into Datastreams({ds}): {r.status_code} {r.text}")
            elif r.status_code != 401:
                problems.append(f"CreateObservations without a token: {r.status_code}, expected 401")
            batch = {"requests": [{"id": "1", "atomicityGroup": "g", "method": "post", "url": "Observations",
                                   "body": {"result": 2, "Datastream": {"@iot.id": ds}}}]}  # fmt: skip
            r = c.post("/v1.1/$batch", json=batch, headers=h)
            sub = r.json()["responses"][0]["status"] if r.status_code == 200 else r.status_code
            # A link in the body to a Datastream the caller may not see is a link to a missing one: 400.
            want = denied_anonymous or (201 if change else 403 if seen else 400)
            if sub != want:
                problems.append(f"$batch POST into Datastreams({ds}): {sub}, expected {want}")
        # A new Thing in each project: for writers of that project only.
        for project in ("groundwater", "traffic"):
            body = {"name": "new", "description": "d", "properties": {"project": project}}
            r = c.post("/v1.1/Things", json=body, headers=h)
            role = who.role(project)
            want = denied_anonymous or (201 if role is not None and role >= 2 else 403)  # type: ignore[operator]
            if r.status_code != want:
                problems.append(f"POST Things in {project}: {r.status_code}, expected {want}: {r.text}")
        check(problems)
