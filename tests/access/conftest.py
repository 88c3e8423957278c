"""A small city with access control on: two projects, each with a public, an internal and a personal Thing (each
with a Location, a Datastream, a MultiDatastream, Sensors, ObservedProperties, Observations, FeaturesOfInterest),
and callers of every kind. ``expected`` says, from the rules in docs/access.md and independently of the code
under test, what each caller may see and change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.access.identity import ALL_PROJECTS, Role
from stadsdata.access.tokens import issue
from stadsdata.api.app import create_app
from stadsdata.model.entities import sensing_registry
from stadsdata.settings import Settings
from stadsdata.store.postgres import PostgresStore
from tests.conftest import NO_MQTT, POSTGRES, STORES, _database_url

PROJECTS = ("groundwater", "traffic")
VISIBILITIES = ("public", "internal", "personal")


@dataclass(frozen=True)
class Who:
    """A caller: its grants as (project, role, personal); ``token`` False is anonymous."""

    name: str
    grants: tuple[tuple[str, Role, bool], ...] = ()
    token: bool = True

    def role(self, project: str) -> Role | None:
        roles = [r for p, r, _ in self.grants if p in (project, ALL_PROJECTS)]
        return max(roles) if roles else None

    def personal(self, project: str) -> bool:
        return any(pers for p, _, pers in self.grants if p in (project, ALL_PROJECTS))


CALLERS = (
    Who("anonymous", token=False),
    Who("resident-groundwater"),  # owns the personal data of project groundwater; no grants
    Who("reader-groundwater", (("groundwater", Role.READER, False),)),
    Who("personal-reader-groundwater", (("groundwater", Role.READER, True),)),
    Who("writer-groundwater", (("groundwater", Role.WRITER, False),)),
    Who("personal-writer-groundwater", (("groundwater", Role.WRITER, True),)),
    Who("reader-everywhere", ((ALL_PROJECTS, Role.READER, False),)),
    Who("admin-everywhere", ((ALL_PROJECTS, Role.ADMIN, True),)),
)


def owner_of(project: str) -> str:
    return f"resident-{project}"


def can_see(who: Who, project: str, visibility: str) -> bool:
    """The rule, stated plainly."""
    if visibility == "public":
        return True
    if visibility == "internal":
        return who.role(project) is not None
    return who.name == owner_of(project) or who.personal(project)


def can_change(who: Who, project: str, visibility: str) -> bool:
    role = who.role(project)
    return can_see(who, project, visibility) and role is not None and role >= Role.WRITER


@dataclass
class Site:
    """The ids of one Thing's entities."""

    project: str
    visibility: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    inner: bool = False
    """A Datastream of ``visibility`` (with its Observations and ObservedProperty) on the project's public Thing,
    sharing that Thing's Sensor and FeatureOfInterest: a visible row with hidden rows related to it."""


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str]
    sites: list[Site]

    def headers(self, who: Who) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who.name]}"} if who.token else {}

    def get(self, who: Who, path: str) -> Any:
        return self.client.get(f"/v1.1/{path}", headers=self.headers(who))

    def expected(self, who: Who, entity_set: str) -> set[int]:
        return {i for s in self.sites if can_see(who, s.project, s.visibility) for i in s.ids.get(entity_set, [])}

    def every(self, entity_set: str) -> set[int]:
        return {i for s in self.sites for i in s.ids.get(entity_set, [])}


def _thing(project: str, visibility: str) -> dict[str, Any]:
    tag = f"{project}-{visibility}"
    marks: dict[str, Any] = {"project": project, "visibility": visibility}
    if visibility == "personal":
        marks["owner"] = owner_of(project)
    stream_marks = {k: v for k, v in marks.items() if k != "project"}
    location = {
        "name": f"place {tag}",
        "description": "where it is",
        "encodingType": "application/geo+json",
        "location": {"type": "Point", "coordinates": [6.89 + len(tag) / 1000, 52.22]},
    }
    return {
        "name": f"thing {tag}",
        "description": f"a {visibility} thing of {project}",
        "properties": marks,
        "Locations": [location],
        "Datastreams": [
            {
                "name": f"stream {tag}",
                "description": "d",
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                "unitOfMeasurement": {"name": "metre", "symbol": "m", "definition": "m"},
                "properties": stream_marks,
                "Sensor": {"name": f"sensor {tag}", "description": "d", "encodingType": "text/plain", "metadata": "m"},
                "ObservedProperty": {"name": f"property {tag}", "definition": f"urn:{tag}", "description": "d"},
                "Observations": [{"phenomenonTime": f"2026-11-0{i}T12:00:00Z", "result": i + 0.5} for i in range(1, 4)],
            }
        ],
        "MultiDatastreams": [
            {
                "name": f"multi {tag}",
                "description": "d",
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation",
                "multiObservationDataTypes": ["http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"],
                "unitOfMeasurements": [{"name": "metre", "symbol": "m", "definition": "m"}],
                "properties": stream_marks,
                "Sensor": {
                    "name": f"multi sensor {tag}",
                    "description": "d",
                    "encodingType": "text/plain",
                    "metadata": "m",
                },  # fmt: skip
                "ObservedProperties": [
                    {"name": f"multi property {tag}", "definition": f"urn:multi:{tag}", "description": "d"}
                ],
                "Observations": [{"phenomenonTime": "2026-11-05T12:00:00Z", "result": [7.5]}],
            }
        ],
    }


def _ids(client: TestClient, path: str) -> list[int]:
    return [e["@iot.id"] for e in client.get(f"/v1.1/{path}").json()["value"]]


@pytest.fixture(scope="module", params=STORES)
def world_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str, testrun_uid: str
) -> Iterator[Callable[[str], Settings]]:
    """Settings for a fresh database of its own, with access control on (module scope: built once per store)."""
    made: list[str] = []

    def make(tag: str) -> Settings:
        if request.param == "postgresql":
            assert POSTGRES is not None
            name = f"stadsdata_access_{tag}_{worker_id}_{testrun_uid[:8]}"
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
            made.append(name)
            url = _database_url(name)
            PostgresStore(url, sensing_registry())
            return Settings(db=url, access="on", **NO_MQTT)
        path: Path = tmp_path_factory.mktemp("access") / f"{tag}.db"
        return Settings(db=str(path), synchronous="NORMAL", access="on", **NO_MQTT)

    yield make
    if made:
        with psycopg.connect(POSTGRES or "", autocommit=True) as admin:
            for name in made:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def build_world(settings: Settings) -> Iterator[World]:
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        store = app.state.store

        def token(who: Who) -> str:
            return str(client.portal.call(store.write, lambda tx: issue(tx, who.name, who.grants)))  # type: ignore[union-attr]

        tokens = {who.name: token(who) for who in CALLERS if who.token}
        admin = {"Authorization": f"Bearer {tokens['admin-everywhere']}"}
        sites = []
        for project in PROJECTS:
            for visibility in VISIBILITIES:
                r = client.post("/v1.1/Things", json=_thing(project, visibility), headers=admin)
                assert r.status_code == 201, r.text
                thing = r.json()["@iot.id"]
                site = Site(project, visibility)
                site.names["Things"] = f"thing {project}-{visibility}"
                site.names["Datastreams"] = f"stream {project}-{visibility}"
                site.names["MultiDatastreams"] = f"multi {project}-{visibility}"
                client.headers.update(admin)
                site.ids["Things"] = [thing]
                site.ids["Locations"] = _ids(client, f"Things({thing})/Locations")
                site.ids["HistoricalLocations"] = _ids(client, f"Things({thing})/HistoricalLocations")
                site.ids["Datastreams"] = _ids(client, f"Things({thing})/Datastreams")
                site.ids["MultiDatastreams"] = _ids(client, f"Things({thing})/MultiDatastreams")
                ds, mds = site.ids["Datastreams"][0], site.ids["MultiDatastreams"][0]
                site.ids["Observations"] = _ids(client, f"Datastreams({ds})/Observations") + _ids(
                    client, f"MultiDatastreams({mds})/Observations"
                )
                site.ids["Sensors"] = [
                    client.get(f"/v1.1/Datastreams({ds})/Sensor").json()["@iot.id"],
                    client.get(f"/v1.1/MultiDatastreams({mds})/Sensor").json()["@iot.id"],
                ]
                site.ids["ObservedProperties"] = [
                    client.get(f"/v1.1/Datastreams({ds})/ObservedProperty").json()["@iot.id"],
                    *_ids(client, f"MultiDatastreams({mds})/ObservedProperties"),
                ]
                site.ids["FeaturesOfInterest"] = sorted(
                    {client.get(f"/v1.1/Observations({o})/FeatureOfInterest").json()["@iot.id"]
                     for o in site.ids["Observations"]}
                )  # fmt: skip
                sites.append(site)
                if visibility == "public":
                    sites += [_inner(client, site, v) for v in ("internal", "personal")]
                del client.headers["Authorization"]
        yield World(client, tokens, sites)


def _inner(client: TestClient, public: Site, visibility: str) -> Site:
    tag = f"{public.project}-public-inner-{visibility}"
    marks = {"visibility": visibility} | ({"owner": owner_of(public.project)} if visibility == "personal" else {})
    body = {
        "name": f"stream {tag}",
        "description": "a hidden Datastream of a public Thing",
        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        "unitOfMeasurement": {"name": "metre", "symbol": "m", "definition": "m"},
        "properties": marks,
        "Sensor": {"@iot.id": public.ids["Sensors"][0]},
        "ObservedProperty": {"name": f"property {tag}", "definition": f"urn:{tag}", "description": "d"},
        "Observations": [{"phenomenonTime": "2026-11-07T12:00:00Z", "result": 1.25}],
    }
    r = client.post(f"/v1.1/Things({public.ids['Things'][0]})/Datastreams", json=body)
    assert r.status_code == 201, r.text
    ds = r.json()["@iot.id"]
    site = Site(public.project, visibility, inner=True)
    site.names["Datastreams"] = f"stream {tag}"
    site.ids["Datastreams"] = [ds]
    site.ids["Observations"] = _ids(client, f"Datastreams({ds})/Observations")
    site.ids["ObservedProperties"] = [client.get(f"/v1.1/Datastreams({ds})/ObservedProperty").json()["@iot.id"]]
    foi = client.get(f"/v1.1/Observations({site.ids['Observations'][0]})/FeatureOfInterest").json()["@iot.id"]
    assert foi in public.ids["FeaturesOfInterest"]  # shared with the public Thing's Observations
    return site


@pytest.fixture(scope="module")
def world(world_settings: Callable[[str], Settings]) -> Iterator[World]:
    """The city, for reading only."""
    yield from build_world(world_settings("read"))


@pytest.fixture
def fresh_world(world_settings: Callable[[str], Settings], request: pytest.FixtureRequest) -> Iterator[World]:
    """The city, for one test that changes it."""
    tag = "w" + str(abs(hash(request.node.nodeid)) % 10**8)
    yield from build_world(world_settings(tag))


ENTITY_SETS = (
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

__all__ = ["CALLERS", "ENTITY_SETS", "World", "Who", "can_change", "can_see"]
