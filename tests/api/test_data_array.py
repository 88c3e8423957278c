"""Conformance: SensorThings API 1.1 data arrays (OGC 18-088 clause 12, req/data-array/...).

Reading Observations with ``$resultFormat=dataArray`` (one dataArray per Datastream or
MultiDatastream, with the components chosen by ``$select``) and creating them with
``POST CreateObservations``. The bad-input side is in test_bad_input.py.

Known server bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import fixtures as f
from tests.conftest import BASE

V = "/v1.1"
COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"
ALL = ["id", "phenomenonTime", "result", "resultTime", "resultQuality", "validTime", "parameters"]
READ_BACK = "phenomenonTime,result,resultTime,resultQuality,validTime,parameters"


# -- helpers ---------------------------------------------------------------------------------------------------------


def get(client: TestClient, path: str) -> Any:
    r = client.get(path if path.startswith("http") else f"{V}/{path}")
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
    return r.json()


def create(client: TestClient, body: list[dict[str, Any]]) -> list[str]:
    r = client.post(f"{V}/CreateObservations", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    links: list[str] = r.json()
    return links


def setup(client: TestClient) -> None:
    """Thing 1 at Location 1 with Datastreams 1 ("a") and 2 ("b"), MultiDatastream 1 (two
    ObservedProperties) and FeatureOfInterest 1 ("screen")."""
    thing = f.thing(
        Locations=[f.location()],
        Datastreams=[
            f.datastream("a", Sensor=f.sensor(), ObservedProperty=f.observed_property()),
            f.datastream("b", Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1}),
        ],
    )
    multi = {
        "name": "level and temperature",
        "description": "two values",
        "observationType": COMPLEX,
        "unitOfMeasurements": [f.UNIT_M, f.UNIT_M],
        "multiObservationDataTypes": [f.MEASUREMENT, f.MEASUREMENT],
        "Thing": {"@iot.id": 1},
        "Sensor": {"@iot.id": 1},
        "ObservedProperties": [{"@iot.id": 1}, f.observed_property("temperature")],
    }
    feature = {"name": "screen", "description": "filter", "encodingType": "application/geo+json", "feature": f.POINT}
    for entity_set, body in (("Things", thing), ("MultiDatastreams", multi), ("FeaturesOfInterest", feature)):
        r = client.post(f"{V}/{entity_set}", json=body)
        assert r.status_code == 201, r.text


def observations(client: TestClient) -> None:
    """Observations 1-2 in Datastream 1, 3-4 in Datastream 2, 5 in MultiDatastream 1."""
    links = create(
        client,
        [
            {
                "Datastream": {"@iot.id": 1},
                "components": ["phenomenonTime", "result", "resultTime", "validTime", "parameters",
                               "FeatureOfInterest/id"],
                "dataArray": [
                    ["2026-01-01T10:00:00+02:00", 1.5, "2026-01-01T09:00:00Z",
                     "2026-01-01T00:00:00Z/2026-01-02T00:00:00Z", {"depth": 3}, 1],
                    ["2026-01-01T09:00:00Z/2026-01-01T10:00:00Z", 2.5, None, None, None, 1],
                ],
            },
            {
                "Datastream": {"@iot.id": 2},
                "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
                "dataArray": [["2026-01-02T00:00:00Z", True, 1], ["2026-01-02T01:00:00Z", "dry", 1]],
            },
            {
                "MultiDatastream": {"@iot.id": 1},
                "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
                "dataArray": [["2026-01-03T00:00:00Z", [1.25, 11.5], 1]],
            },
        ],
    )  # fmt: skip
    assert links == [f"{BASE}/Observations({i})" for i in range(1, 6)]


ROWS_DS1 = [
    [1, "2026-01-01T08:00:00Z", 1.5, "2026-01-01T09:00:00Z", None, "2026-01-01T00:00:00Z/2026-01-02T00:00:00Z",
     {"depth": 3}],
    [2, "2026-01-01T09:00:00Z/2026-01-01T10:00:00Z", 2.5, None, None, None, None],
]  # fmt: skip
ROWS_DS2 = [
    [3, "2026-01-02T00:00:00Z", True, None, None, None, None],
    [4, "2026-01-02T01:00:00Z", "dry", None, None, None, None],
]
ROWS_MDS1 = [[5, "2026-01-03T00:00:00Z", [1.25, 11.5], None, None, None, None]]


def group(parent: str, ds: int, components: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        f"{parent}@iot.navigationLink": f"{BASE}/{parent}s({ds})",
        "components": components,
        "dataArray@iot.count": len(rows),
        "dataArray": rows,
    }


def pick(rows: list[list[Any]], *columns: str) -> list[list[Any]]:
    at = [ALL.index(c) for c in columns]
    return [[row[i] for i in at] for row in rows]


# -- reading: $resultFormat=dataArray --------------------------------------------------------------------------------


def test_observations_as_data_array(client: TestClient) -> None:
    """req/data-array/data-array: grouped per (Multi)Datastream, all components when there is no $select."""
    setup(client)
    observations(client)
    assert get(client, "Observations?$resultFormat=dataArray") == {
        "value": [
            group("Datastream", 1, ALL, ROWS_DS1),
            group("Datastream", 2, ALL, ROWS_DS2),
            group("MultiDatastream", 1, ALL, ROWS_MDS1),
        ]
    }


def test_data_array_of_one_datastream_with_select(client: TestClient) -> None:
    setup(client)
    observations(client)
    doc = get(client, "Datastreams(1)/Observations?$resultFormat=dataArray&$select=phenomenonTime,result,validTime")
    assert doc == {
        "value": [
            group(
                "Datastream",
                1,
                ["phenomenonTime", "result", "validTime"],
                pick(ROWS_DS1, "phenomenonTime", "result", "validTime"),
            )
        ]
    }
    doc = get(client, "MultiDatastreams(1)/Observations?$resultFormat=dataArray&$select=id,result")
    assert doc == {"value": [group("MultiDatastream", 1, ["id", "result"], [[5, [1.25, 11.5]]])]}


@pytest.mark.parametrize(
    ("select", "components"),
    [
        ("result,id", ["result", "id"]),
        ("@iot.id,resultTime", ["id", "resultTime"]),
        ("parameters,result,phenomenonTime", ["parameters", "result", "phenomenonTime"]),
    ],
)
def test_select_chooses_components_in_its_order(client: TestClient, select: str, components: list[str]) -> None:
    setup(client)
    observations(client)
    doc = get(client, f"Datastreams(2)/Observations?$resultFormat=dataArray&$select={select}")
    assert doc == {"value": [group("Datastream", 2, components, pick(ROWS_DS2, *components))]}


def test_data_array_with_filter_orderby_and_count(client: TestClient) -> None:
    """Groups come in order of their first row; rows keep $orderby inside a group."""
    setup(client)
    observations(client)
    doc = get(client, "Observations?$resultFormat=dataArray&$select=id,result&$orderby=phenomenonTime desc&$count=true")
    assert doc == {
        "@iot.count": 5,
        "value": [
            group("MultiDatastream", 1, ["id", "result"], [[5, [1.25, 11.5]]]),
            group("Datastream", 2, ["id", "result"], [[4, "dry"], [3, True]]),
            group("Datastream", 1, ["id", "result"], [[2, 2.5], [1, 1.5]]),
        ],
    }
    doc = get(client, "Observations?$resultFormat=dataArray&$select=id&$filter=result eq 2.5 or result eq 'dry'")
    assert doc == {"value": [group("Datastream", 1, ["id"], [[2]]), group("Datastream", 2, ["id"], [[4]])]}
    assert get(client, "Observations?$resultFormat=dataArray&$filter=result eq 99") == {"value": []}


def test_data_array_pages_with_next_link(client: TestClient) -> None:
    """Server-driven paging: @iot.nextLink keeps $resultFormat; each page is grouped on its own."""
    setup(client)
    observations(client)
    first = get(client, "Observations?$resultFormat=dataArray&$select=id,result&$orderby=@iot.id&$top=3&$count=true")
    assert first["@iot.count"] == 5
    assert first["value"] == [
        group("Datastream", 1, ["id", "result"], [[1, 1.5], [2, 2.5]]),
        group("Datastream", 2, ["id", "result"], [[3, True]]),
    ]
    link = first["@iot.nextLink"]
    assert link.startswith(f"{BASE}/Observations?") and "$resultFormat=dataArray" in link
    second = get(client, link)
    assert second == {
        "@iot.count": 5,
        "value": [
            group("Datastream", 2, ["id", "result"], [[4, "dry"]]),
            group("MultiDatastream", 1, ["id", "result"], [[5, [1.25, 11.5]]]),
        ],
    }


def test_data_array_inside_expand(client: TestClient) -> None:
    setup(client)
    observations(client)
    doc = get(
        client,
        "Datastreams?$select=name&$orderby=@iot.id"
        "&$expand=Observations($resultFormat=dataArray;$select=id,result;$orderby=@iot.id desc;$count=true)",
    )
    assert doc == {
        "value": [
            {
                "name": "a",
                "Observations@iot.count": 2,
                "Observations": [group("Datastream", 1, ["id", "result"], [[2, 2.5], [1, 1.5]])],
            },
            {
                "name": "b",
                "Observations@iot.count": 2,
                "Observations": [group("Datastream", 2, ["id", "result"], [[4, "dry"], [3, True]])],
            },
        ]
    }


def test_expanded_data_array_has_next_link(client: TestClient) -> None:
    setup(client)
    observations(client)
    doc = get(client, "Datastreams(1)?$select=name&$expand=Observations($resultFormat=dataArray;$select=id;$top=1)")
    assert doc["Observations"] == [group("Datastream", 1, ["id"], [[1]])]
    link = doc["Observations@iot.nextLink"]
    assert link.startswith(f"{BASE}/Datastreams(1)/Observations?")
    rest = client.get(link.removeprefix("http://testserver"))
    assert rest.status_code == 200, rest.text
    assert rest.json()["value"] == [group("Datastream", 1, ["id"], [[2]])]


# -- creating: CreateObservations ------------------------------------------------------------------------------------


def test_create_observations_reads_back_exactly(client: TestClient) -> None:
    """req/data-array/create-observations: several Datastreams and a MultiDatastream in one request;
    the response lists the selfLinks in row order; times are stored and returned in UTC."""
    setup(client)
    observations(client)
    full = [get(client, f"Observations({i})?$select={READ_BACK}") for i in range(1, 6)]
    assert full == [
        {"phenomenonTime": "2026-01-01T08:00:00Z", "result": 1.5, "resultTime": "2026-01-01T09:00:00Z",
         "resultQuality": None, "validTime": "2026-01-01T00:00:00Z/2026-01-02T00:00:00Z", "parameters": {"depth": 3}},
        {"phenomenonTime": "2026-01-01T09:00:00Z/2026-01-01T10:00:00Z", "result": 2.5, "resultTime": None,
         "resultQuality": None, "validTime": None, "parameters": None},
        {"phenomenonTime": "2026-01-02T00:00:00Z", "result": True, "resultTime": None, "resultQuality": None,
         "validTime": None, "parameters": None},
        {"phenomenonTime": "2026-01-02T01:00:00Z", "result": "dry", "resultTime": None, "resultQuality": None,
         "validTime": None, "parameters": None},
        {"phenomenonTime": "2026-01-03T00:00:00Z", "result": [1.25, 11.5], "resultTime": None,
         "resultQuality": None, "validTime": None, "parameters": None},
    ]  # fmt: skip
    parents = [
        get(client, f"Observations({i})/{p}?$select=name")["name"]
        for i, p in [(1, "Datastream"), (2, "Datastream"), (3, "Datastream"), (4, "Datastream"), (5, "MultiDatastream")]
    ]
    assert parents == ["a", "a", "b", "b", "level and temperature"]
    for i in range(1, 6):
        assert get(client, f"Observations({i})/FeatureOfInterest?$select=id,name") == {"@iot.id": 1, "name": "screen"}
    assert get(client, "Datastreams(1)?$select=phenomenonTime,resultTime") == {
        "phenomenonTime": "2026-01-01T08:00:00Z/2026-01-01T10:00:00Z",
        "resultTime": "2026-01-01T09:00:00Z/2026-01-01T09:00:00Z",
    }


ORDERS = [
    ["phenomenonTime", "result", "resultTime", "validTime", "parameters", "FeatureOfInterest/id"],
    ["FeatureOfInterest/id", "parameters", "validTime", "resultTime", "result", "phenomenonTime"],
    ["result", "FeatureOfInterest/id", "phenomenonTime", "parameters", "resultTime", "validTime"],
]


@pytest.mark.parametrize("components", ORDERS, ids=["spec", "reversed", "mixed"])
def test_create_observations_components_in_any_order(client: TestClient, components: list[str]) -> None:
    setup(client)
    cells = {
        "phenomenonTime": "2026-05-01T12:30:00.250-01:00",
        "result": {"level": -0.5},
        "resultTime": "2026-05-01T14:00:00+00:00",
        "validTime": "2026-05-01T00:00:00+02:00/2026-05-02T00:00:00+02:00",
        "parameters": {"method": "diver"},
        "FeatureOfInterest/id": 1,
    }
    body = [{"Datastream": {"@iot.id": 2}, "components": components, "dataArray": [[cells[c] for c in components]]}]
    assert create(client, body) == [f"{BASE}/Observations(1)"]
    assert get(client, f"Observations(1)?$select={READ_BACK}") == {
        "phenomenonTime": "2026-05-01T13:30:00.250Z",
        "result": {"level": -0.5},
        "resultTime": "2026-05-01T14:00:00Z",
        "resultQuality": None,
        "validTime": "2026-04-30T22:00:00Z/2026-05-01T22:00:00Z",
        "parameters": {"method": "diver"},
    }
    assert get(client, "Observations(1)/FeatureOfInterest?$select=id") == {"@iot.id": 1}
    assert get(client, "Observations(1)/Datastream?$select=id") == {"@iot.id": 2}


def test_create_observations_bad_rows_get_errors_and_the_others_are_created(client: TestClient) -> None:
    setup(client)
    body: list[dict[str, Any]] = [
        {
            "Datastream": {"@iot.id": 1},
            "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
            "dataArray": [
                ["2026-02-01T00:00:00Z", 1, 1],
                ["yesterday", 2, 1],
                ["2026-02-01T02:00:00Z", 3, 99],
                ["2026-02-01T03:00:00Z", 4],
                ["2026-02-01T04:00:00Z", 5, 1],
            ],
        },
        {"Datastream": {"@iot.id": 9}, "components": ["result"], "dataArray": [[6]]},
        {
            "MultiDatastream": {"@iot.id": 1},
            "components": ["result", "phenomenonTime"],
            "dataArray": [
                [[7, 8], "2026-02-01T05:00:00Z"],
                [[9], "2026-02-01T06:00:00Z"],
                [7.5, "2026-02-01T07:00:00Z"],
            ],
        },
    ]
    assert create(client, body) == [
        f"{BASE}/Observations(1)",
        "error: [0].dataArray[1].phenomenonTime: 'yesterday' is not an ISO 8601 date-time "
        "(expected e.g. '2026-11-22T10:00:00Z')",
        "error: there is no FeatureOfInterest with @iot.id 99",
        "error: [0].dataArray[3]: a row must be an array of 3 values, one per component",
        f"{BASE}/Observations(2)",
        "error: there is no Datastream with @iot.id 9",
        f"{BASE}/Observations(3)",
        "error: an Observation of MultiDatastream 1 has an array result with 2 values",
        "error: an Observation of MultiDatastream 1 has an array result with 2 values",
    ]
    doc = get(client, "Observations?$select=id,result,phenomenonTime&$orderby=@iot.id")
    assert doc == {
        "value": [
            {"@iot.id": 1, "result": 1, "phenomenonTime": "2026-02-01T00:00:00Z"},
            {"@iot.id": 2, "result": 5, "phenomenonTime": "2026-02-01T04:00:00Z"},
            {"@iot.id": 3, "result": [7, 8], "phenomenonTime": "2026-02-01T05:00:00Z"},
        ]
    }


def test_create_observations_defaults(client: TestClient) -> None:
    """Without phenomenonTime it is the time of the request; without FeatureOfInterest/id it is derived
    from the Thing's Location (req/create-update-delete/create-entity, Observation)."""
    setup(client)
    before = datetime.now(UTC) - timedelta(seconds=1)
    links = create(client, [{"Datastream": {"@iot.id": 1}, "components": ["result"], "dataArray": [[10], [11]]}])
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert links == [f"{BASE}/Observations(1)", f"{BASE}/Observations(2)"]
    for i in (1, 2):
        doc = get(client, f"Observations({i})?$select=phenomenonTime,result")
        assert doc["result"] == 9 + i
        assert doc["phenomenonTime"].endswith("Z")
        assert before <= datetime.fromisoformat(doc["phenomenonTime"].replace("Z", "+00:00")) <= after
    features = [get(client, f"Observations({i})/FeatureOfInterest") for i in (1, 2)]
    assert features[0] == features[1]
    assert features[0]["@iot.id"] != 1 and features[0]["feature"] == f.POINT
    assert features[0]["name"] == "Roombeek 12"
