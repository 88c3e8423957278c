"""Real third-party clients, used unchanged, against a real ``stadsdata serve`` process.

frost-sta-client (the Python client of FROST-Server) and pygeoapi's SensorThings
provider talk HTTP to the server exactly as they would to any SensorThings service.
One server runs per store (SQLite, and PostgreSQL when ``STADSDATA_TEST_POSTGRES``
is set); every test makes its own entities, with names and places of its own, so the
tests do not depend on each other.

Places: the frost-sta-client tests put their Things in Hengelo; the pygeoapi tests put
theirs in Enschede, at the University of Twente, in Glanerbrug and near Utrecht, so a
bounding box around Enschede holds only the pygeoapi ones it should.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import frost_sta_client as fsc
import psycopg
import pytest
import requests
from pygeoapi.provider.sensorthings import SensorThingsProvider

from tests.conftest import POSTGRES, STORES

MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON = "application/geo+json"
HENGELO = [6.7931, 52.2658]

# ---------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, stderr: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"stadsdata serve exited with code {proc.returncode} before answering GET {url}; "
                f"its stderr:\n{stderr.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    pytest.fail(
        f"stadsdata serve did not answer GET {url} within {timeout:.0f} s; "
        f"its stderr:\n{stderr.read_text(errors='replace')}"
    )


def _postgres_url(name: str) -> str:
    assert POSTGRES is not None
    base, _, _ = POSTGRES.rpartition("/")
    return f"{base}/{name}"


def _recreate_database(name: str, *, drop_only: bool = False) -> None:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``stadsdata serve`` subprocess on a fresh database: its service root URL (…/v1.1)."""
    tmp = tmp_path_factory.mktemp("clients")
    database: str | None = None
    if request.param == "postgresql":
        database = f"stadsdata_clients_{os.environ.get('PYTEST_XDIST_WORKER', 'master')}"
        _recreate_database(database)
        db = _postgres_url(database)  # the server creates the schema on start
    else:
        db = str(tmp / "c.db")
    port = _free_port()
    stderr_path = tmp / "server.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stadsdata.cli", "serve", "--db", db, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}/v1.1"
    try:
        _wait_until_up(proc, base, stderr_path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if database is not None:
            _recreate_database(database, drop_only=True)


@pytest.fixture
def service(server: str) -> Any:
    return fsc.SensorThingsService(server)


# ---------------------------------------------------------------- frost-sta-client


def _make_datastream(service: Any, tag: str, coordinates: list[float] | None = None) -> tuple[Any, Any]:
    """A Thing with a Location, a Sensor, an ObservedProperty and a Datastream, all created through the client."""
    location = fsc.Location(
        name=f"{tag} location",
        description="a place in Hengelo",
        encoding_type=GEOJSON,
        location={"type": "Point", "coordinates": coordinates or HENGELO},
        properties={"gemeente": "Hengelo"},
    )
    thing = fsc.Thing(
        name=f"{tag} thing", description="a weather station", properties={"tag": tag}, locations=[location]
    )
    service.create(thing)
    sensor = fsc.Sensor(
        name=f"{tag} sensor",
        description="a thermometer",
        encoding_type="application/pdf",
        metadata="https://x/t.pdf",
        properties={"brand": "Vaisala"},
    )
    service.create(sensor)
    observed_property = fsc.ObservedProperty(
        name=f"{tag} temperature", definition="https://qudt.org/vocab/quantitykind/Temperature", description="air"
    )
    service.create(observed_property)
    datastream = fsc.Datastream(
        name=f"{tag} datastream",
        description="air temperature",
        observation_type=MEASUREMENT,
        unit_of_measurement=fsc.UnitOfMeasurement(
            name="degree Celsius", symbol="°C", definition="http://qudt.org/vocab/unit/DEG_C"
        ),
        thing=thing,
        sensor=sensor,
        observed_property=observed_property,
    )
    service.create(datastream)
    return thing, datastream


def _data_array(datastream: Any, rows: list[tuple[str, Any]]) -> Any:
    value = fsc.DataArrayValue()
    value.datastream = datastream
    value.components = {fsc.DataArrayValue.Property.PHENOMENON_TIME, fsc.DataArrayValue.Property.RESULT}
    for phenomenon_time, result in rows:
        value.add_observation(fsc.Observation(phenomenon_time=phenomenon_time, result=result, datastream=datastream))
    document = fsc.DataArrayDocument()
    document.add_data_array_value(value)
    return document


def _minute(i: int) -> str:
    return f"2024-03-01T{i // 60:02d}:{i % 60:02d}:00Z"


def _status_of_find(dao: Any, entity_id: int) -> int:
    try:
        dao.find(entity_id)
    except requests.exceptions.HTTPError as e:
        assert e.response is not None
        return int(e.response.status_code)
    return 200


def test_frost_creates_a_sensing_graph_and_reads_it_back(service: Any, server: str) -> None:
    thing, datastream = _make_datastream(service, "graph")
    assert isinstance(thing.id, int)
    assert isinstance(datastream.id, int)

    things = list(
        service.things()
        .query()
        .filter("name eq 'graph thing'")
        .expand("Locations,Datastreams($expand=Sensor,ObservedProperty)")
        .list()
    )
    assert [t.id for t in things] == [thing.id]
    got = things[0]
    assert (got.name, got.description, got.properties) == ("graph thing", "a weather station", {"tag": "graph"})
    assert got.self_link == f"{server}/Things({thing.id})"
    [location] = got.locations.entities
    assert (location.name, location.encoding_type) == ("graph location", GEOJSON)
    assert location.location == {"type": "Point", "coordinates": HENGELO}
    assert location.properties == {"gemeente": "Hengelo"}
    [ds] = got.datastreams.entities
    assert ds.id == datastream.id
    assert (ds.name, ds.description, ds.observation_type) == ("graph datastream", "air temperature", MEASUREMENT)
    uom = ds.unit_of_measurement
    assert (uom.name, uom.symbol, uom.definition) == ("degree Celsius", "°C", "http://qudt.org/vocab/unit/DEG_C")
    assert ds.sensor.name == "graph sensor"
    assert ds.sensor.encoding_type == "application/pdf"
    assert ds.sensor.metadata == "https://x/t.pdf"
    assert ds.sensor.properties == {"brand": "Vaisala"}
    assert ds.observed_property.name == "graph temperature"
    assert ds.observed_property.definition == "https://qudt.org/vocab/quantitykind/Temperature"


def test_frost_reads_a_sensor_created_without_properties(service: Any) -> None:
    sensor = fsc.Sensor(name="bare sensor", description="d", encoding_type="text/html", metadata="https://x")
    service.create(sensor)

    got = service.sensors().find(sensor.id)

    assert (got.id, got.name, got.properties) == (sensor.id, "bare sensor", {})


def test_frost_observations_filter_and_orderby(service: Any) -> None:
    _, datastream = _make_datastream(service, "filter")
    for i, result in enumerate([21.5, 19.0, 23.25, 18.0, 22.0, 20.0]):
        observation = fsc.Observation(phenomenon_time=_minute(i), result=result, datastream=datastream)
        service.create(observation)
        assert isinstance(observation.id, int)

    found = list(
        service.observations()
        .query()
        .filter(f"Datastream/@iot.id eq {datastream.id} and result ge 20")
        .orderby("result", "desc")
        .list()
    )
    assert [(o.result, o.phenomenon_time) for o in found] == [
        (23.25, _minute(2)),
        (22.0, _minute(4)),
        (21.5, _minute(0)),
        (20.0, _minute(5)),
    ]

    earliest = list(
        service.observations()
        .query()
        .filter(f"Datastream/@iot.id eq {datastream.id} and phenomenonTime lt {_minute(3)}")
        .orderby("phenomenonTime", "asc")
        .top(2)
        .list()
    )
    assert [o.result for o in earliest[:2]] == [21.5, 19.0]


def test_frost_orderby_with_the_clients_default_order(service: Any) -> None:
    _, datastream = _make_datastream(service, "defaultorder")
    for i, result in enumerate([2, 3, 1]):
        service.create(fsc.Observation(phenomenon_time=_minute(i), result=result, datastream=datastream))

    # Query.orderby(criteria, order='DESC') sends "$orderby=result DESC"
    found = service.observations().query().filter(f"Datastream/@iot.id eq {datastream.id}").orderby("result").list()

    assert [o.result for o in found] == [3, 2, 1]


def test_frost_create_observations_answers_one_self_link_per_row(service: Any, server: str) -> None:
    _, datastream = _make_datastream(service, "dataarray")
    rows = [(_minute(0), 1.5), (_minute(1), 2.5), (_minute(2), 3.5)]
    created = service.observations().create(_data_array(datastream, rows))

    links = [o.self_link for o in created]
    assert len(links) == 3
    ids = [fsc.utils.extract_value(link) for link in links]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 3
    assert links == [f"{server}/Observations({i})" for i in ids]
    for i, (phenomenon_time, result) in zip(ids, rows, strict=True):
        observation = service.observations().find(i)
        assert (observation.result, observation.phenomenon_time) == (result, phenomenon_time)


def test_frost_entity_list_pages_through_next_links(service: Any) -> None:
    _, datastream = _make_datastream(service, "paging")
    created = service.observations().create(_data_array(datastream, [(_minute(i), i) for i in range(250)]))
    assert len(created) == 250

    observations = (
        service.observations()
        .query()
        .filter(f"Datastream/@iot.id eq {datastream.id}")
        .orderby("phenomenonTime", "asc")
        .count()
        .list()
    )
    assert observations.count == 250
    assert len(observations.entities) == 100  # the server's default page size
    assert observations.next_link is not None

    seen = list(observations)  # iterating follows @iot.nextLink
    assert [o.result for o in seen] == list(range(250))
    assert [o.phenomenon_time for o in seen] == [_minute(i) for i in range(250)]
    assert len({o.id for o in seen}) == 250
    assert {o.id for o in seen} == {fsc.utils.extract_value(o.self_link) for o in created}
    assert observations.next_link is None


def test_frost_patch_and_put_update(service: Any) -> None:
    thing, _ = _make_datastream(service, "update")

    service.patch(
        thing,
        [
            {"op": "replace", "path": "/name", "value": "update thing, renamed"},
            {"op": "add", "path": "/properties/floor", "value": 3},
        ],
    )
    patched = service.things().find(thing.id)
    assert patched.name == "update thing, renamed"
    assert patched.description == "a weather station"
    assert patched.properties == {"tag": "update", "floor": 3}

    patched.description = "a weather station on the roof"
    patched.properties = {"tag": "update", "floor": 4}
    service.update(patched)  # PUT
    put = service.things().find(thing.id)
    assert (put.name, put.description, put.properties) == (
        "update thing, renamed",
        "a weather station on the roof",
        {"tag": "update", "floor": 4},
    )


def test_frost_delete(service: Any) -> None:
    thing, datastream = _make_datastream(service, "delete")
    observation = fsc.Observation(phenomenon_time=_minute(0), result=7, datastream=datastream)
    service.create(observation)
    assert service.observations().find(observation.id).result == 7

    service.delete(observation)
    assert _status_of_find(service.observations(), observation.id) == 404
    assert _status_of_find(service.datastreams(), datastream.id) == 200

    service.delete(thing)
    assert _status_of_find(service.things(), thing.id) == 404
    # deleting a Thing deletes its Datastreams (SensorThings 1.1, 10.4)
    assert _status_of_find(service.datastreams(), datastream.id) == 404
    assert list(service.things().query().filter("name eq 'delete thing'").list()) == []


# ---------------------------------------------------------------- pygeoapi

ENSCHEDE_CENTRE_BBOX = [6.88, 52.21, 6.91, 52.23]
ENSCHEDE_BBOX = [6.80, 52.20, 6.95, 52.25]  # the centre and the University of Twente, not Glanerbrug
PLACES = {
    "Enschede Stadhuis": [6.8958, 52.2209],
    "Enschede Station": [6.8936, 52.2225],
    "Universiteit Twente": [6.8531, 52.2394],
    "Utrecht": [5.0, 52.0],
}


def _post(server: str, path: str, body: dict[str, Any]) -> int:
    response = requests.post(f"{server}/{path}", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return int(fsc.utils.extract_value(response.headers["Location"]))


@pytest.fixture(scope="module")
def places(server: str) -> dict[str, int]:
    """Things with a Location each, at PLACES: their ids by name."""
    ids = {}
    for name, coordinates in PLACES.items():
        ids[name] = _post(
            server,
            "Things",
            {
                "name": name,
                "description": "a place",
                "properties": {"kind": "place"},
                "Locations": [
                    {
                        "name": f"{name} location",
                        "description": "where it is",
                        "encodingType": GEOJSON,
                        "location": {"type": "Point", "coordinates": coordinates},
                        "properties": {"wijk": name.lower()},
                    }
                ],
            },
        )
    return ids


def _provider(server: str, entity: str) -> SensorThingsProvider:
    return SensorThingsProvider(
        {"name": "SensorThings", "type": "feature", "data": server, "entity": entity, "title_field": "name"}
    )


def _point(name: str) -> dict[str, Any]:
    return {"type": "Point", "coordinates": PLACES[name]}


def test_pygeoapi_things_in_a_bbox(server: str, places: dict[str, int]) -> None:
    provider = _provider(server, "Things")
    collection = provider.query(bbox=ENSCHEDE_CENTRE_BBOX, limit=10, sortby=[{"property": "name", "order": "+"}])

    assert collection["type"] == "FeatureCollection"
    assert collection["numberReturned"] == 2
    features = collection["features"]
    assert [f["id"] for f in features] == [str(places["Enschede Stadhuis"]), str(places["Enschede Station"])]
    assert [f["geometry"] for f in features] == [_point("Enschede Stadhuis"), _point("Enschede Station")]
    assert [f["properties"]["name"] for f in features] == ["Enschede Stadhuis", "Enschede Station"]
    # the Thing's properties and its Location's properties, merged by the provider
    assert [(f["properties"]["kind"], f["properties"]["wijk"]) for f in features] == [
        ("place", "enschede stadhuis"),
        ("place", "enschede station"),
    ]

    hits = provider.query(bbox=ENSCHEDE_BBOX, resulttype="hits")
    assert hits["numberMatched"] == 3
    assert hits["features"] == []


def test_pygeoapi_get_one_thing(server: str, places: dict[str, int]) -> None:
    feature = _provider(server, "Things").get(places["Utrecht"])

    assert feature["type"] == "Feature"
    assert feature["id"] == str(places["Utrecht"])
    assert feature["geometry"] == _point("Utrecht")
    properties = feature["properties"]
    assert (properties["name"], properties["description"]) == ("Utrecht", "a place")
    assert properties["@iot.selfLink"] == f"{server}/Things({places['Utrecht']})"
    assert [loc["location"] for loc in properties["Locations"]] == [_point("Utrecht")]
    assert properties["Datastreams"] == []


def test_pygeoapi_paging_with_limit_and_offset(server: str, places: dict[str, int]) -> None:
    provider = _provider(server, "Things")
    by_name = [{"property": "name", "order": "+"}]
    expected = ["Enschede Stadhuis", "Enschede Station", "Universiteit Twente"]

    pages = [provider.query(bbox=ENSCHEDE_BBOX, limit=2, offset=offset, sortby=by_name) for offset in (0, 2, 4)]

    assert [[f["properties"]["name"] for f in page["features"]] for page in pages] == [expected[:2], expected[2:], []]
    assert [page["numberReturned"] for page in pages] == [2, 1, 0]
    assert [f["id"] for page in pages for f in page["features"]] == [str(places[n]) for n in expected]
    assert [f["geometry"] for page in pages for f in page["features"]] == [_point(n) for n in expected]


def test_pygeoapi_datastreams_in_a_bbox(server: str, places: dict[str, int]) -> None:
    thing = places["Universiteit Twente"]
    sensor = _post(
        server,
        "Sensors",
        {"name": "ut sensor", "description": "s", "encodingType": "text/html", "metadata": "https://ut.nl"},
    )
    observed_property = _post(
        server, "ObservedProperties", {"name": "ut pm10", "definition": "https://x/pm10", "description": "fijnstof"}
    )
    datastream = _post(
        server,
        "Datastreams",
        {
            "name": "ut datastream",
            "description": "fijnstof",
            "observationType": MEASUREMENT,
            "unitOfMeasurement": {
                "name": "microgram per cubic metre",
                "symbol": "µg/m³",
                "definition": "https://x/ugm3",
            },
            "properties": {"station": "UT"},
            "Thing": {"@iot.id": thing},
            "Sensor": {"@iot.id": sensor},
            "ObservedProperty": {"@iot.id": observed_property},
        },
    )
    older = _post(
        server, "Observations", {"phenomenonTime": _minute(0), "result": 12, "Datastream": {"@iot.id": datastream}}
    )
    newer = _post(
        server, "Observations", {"phenomenonTime": _minute(1), "result": 14, "Datastream": {"@iot.id": datastream}}
    )

    collection = _provider(server, "Datastreams").query(bbox=ENSCHEDE_BBOX, limit=10)

    assert [f["id"] for f in collection["features"]] == [str(datastream)]
    [feature] = collection["features"]
    # the geometry of the newest Observation's FeatureOfInterest, made from the Thing's Location
    assert feature["geometry"] == _point("Universiteit Twente")
    properties = feature["properties"]
    assert properties["name"] == "ut datastream"
    assert properties["unitOfMeasurement"]["symbol"] == "µg/m³"
    assert properties["station"] == "UT"
    assert properties["Sensor"]["name"] == "ut sensor"
    assert properties["ObservedProperty"]["name"] == "ut pm10"
    assert properties["Thing"]["name"] == "Universiteit Twente"
    # Observations($select=@iot.id;$orderby=phenomenonTime desc), FeatureOfInterest($select=feature) within
    assert [o["@iot.id"] for o in properties["Observations"]] == [newer, older]


def test_pygeoapi_thing_whose_location_has_no_properties(server: str, places: dict[str, int]) -> None:
    glanerbrug = [6.9731, 52.2136]
    thing = _post(
        server,
        "Things",
        {
            "name": "Glanerbrug",
            "description": "a place",
            "properties": {"kind": "place"},
            "Locations": [
                {
                    "name": "Glanerbrug location",
                    "description": "d",
                    "encodingType": GEOJSON,
                    "location": {"type": "Point", "coordinates": glanerbrug},
                }
            ],
        },
    )

    collection = _provider(server, "Things").query(bbox=[6.96, 52.20, 6.99, 52.22], limit=10)

    assert [f["id"] for f in collection["features"]] == [str(thing)]
    assert collection["features"][0]["geometry"] == {"type": "Point", "coordinates": glanerbrug}
    assert collection["features"][0]["properties"]["kind"] == "place"
