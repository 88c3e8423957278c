"""The OpenAPI document (GET /v1.1/api) and the documentation page (GET /v1.1/api.html).

The document must be valid OpenAPI 3.1, cover the registry, and describe what the server really
does: schemathesis sends generated requests to the app in-process (a fresh SQLite database with one
of each entity) and checks that no answer is a 5xx and that every answer matches the document.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from stadsdata.api.app import create_app
from stadsdata.model.entities import sensing_registry
from stadsdata.settings import Settings
from tests import fixtures
from tests.conftest import NO_MQTT

MAX_EXAMPLES = 4
"""Generated requests per operation; the document has ~250 operations, and the whole file must stay under 90 s."""


def _seeded_app(db: Path) -> Starlette:
    """The app on a fresh SQLite database holding one entity of each type (ids 1), so that paths with
    small ids find something. Its lifespan is left to schemathesis, which keeps it for the process."""
    application = create_app(Settings(db=str(db), synchronous="NORMAL", **NO_MQTT))
    client = TestClient(application)  # no lifespan: its end would close the store
    created = client.post("/v1.1/Things", json=fixtures.full_thing())
    assert created.status_code == 201, created.text
    obs = {"phenomenonTime": "2026-11-22T10:00:00Z", "result": 1.25, "Datastream": {"@iot.id": 1}}
    assert client.post("/v1.1/Observations", json=obs).status_code == 201
    multi = {
        "name": "level and temperature",
        "description": "two values",
        "unitOfMeasurements": [fixtures.UNIT_M, {"name": "degree Celsius", "symbol": "°C"}],
        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation",
        "multiObservationDataTypes": [fixtures.MEASUREMENT, fixtures.MEASUREMENT],
        "Thing": {"@iot.id": 1},
        "Sensor": {"@iot.id": 1},
        "ObservedProperties": [{"@iot.id": 1}, fixtures.observed_property("temperature")],
    }
    created = client.post("/v1.1/MultiDatastreams", json=multi)
    assert created.status_code == 201, created.text
    return application


# Built at import, because schemathesis parametrizes the test from the document when collecting
# (its fixture-based loader does not work with pytest 9). Each xdist worker has its own database.
_TMP = tempfile.TemporaryDirectory(prefix="stadsdata-openapi-")
APP = _seeded_app(Path(_TMP.name) / "sta.db")


async def _without_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """APP for schemathesis: its ASGI client runs the lifespan around each test, and the end of
    the lifespan closes the store; here the lifespan is acknowledged and the store stays open."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await APP(scope, receive, send)


@pytest.fixture(scope="module")
def app() -> Iterator[Starlette]:
    yield APP
    asyncio.run(APP.state.store.close())


@pytest.fixture(scope="module")
def client(app: Starlette) -> TestClient:
    return TestClient(app, base_url="http://testserver")


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1.1/api")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = response.json()
    return doc


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any error
    assert document["servers"] == [{"url": "http://testserver/v1.1"}]


def test_document_covers_the_registry(document: dict[str, Any]) -> None:
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    for t in sensing_registry():
        s = t.set_name
        assert set(paths[f"/{s}"]) >= {"get", "post"}, s
        assert set(paths[f"/{s}({{id}})"]) >= {"get", "patch", "put", "delete"}, s
        assert "get" in paths[f"/{s}({{id}})/$ref"]
        assert "get" in paths[f"/{s}({{id}})/{{property}}"]
        assert "get" in paths[f"/{s}({{id}})/{{property}}/$value"]
        assert {t.name, f"{t.name}Create", f"{t.name}Patch", f"{t.name}Collection"} <= set(schemas)
        for p in t.properties:
            assert p.name in schemas[t.name]["properties"], (t.name, p.name)
        for rel in t.relations:
            nav = paths[f"/{s}({{id}})/{rel.name}"]
            assert "get" in nav, (s, rel.name)
            assert ("post" in nav) is rel.many, (s, rel.name)
            assert f"{rel.name}@iot.navigationLink" in schemas[t.name]["properties"]
            ref = paths[f"/{s}({{id}})/{rel.name}/$ref"]
            assert "post" in ref if rel.many else "put" in ref, (s, rel.name)
    assert "post" in paths["/CreateObservations"]
    assert "post" in paths["/$batch"]
    for option in (
        "$filter",
        "$orderby",
        "$top",
        "$skip",
        "$count",
        "$select",
        "$expand",
        "$resultFormat",
        "$skiptoken",
    ):
        assert option in {p["name"] for p in document["components"]["parameters"].values()}, option
    assert set(schemas["Error"]["required"]) == {"code", "message"}


def test_document_follows_base_url(tmp_path: Path) -> None:
    app = create_app(Settings(db=str(tmp_path / "b.db"), base_url="https://data.example.org/sta/v1.1/", **NO_MQTT))
    with TestClient(app) as client:
        assert client.get("/v1.1/api").json()["servers"] == [{"url": "https://data.example.org/sta/v1.1"}]


def test_error_body_matches_error_schema(client: TestClient, document: dict[str, Any]) -> None:
    body = client.get("/v1.1/Things", params={"$top": "x"}).json()
    assert set(body) <= set(document["components"]["schemas"]["Error"]["properties"])
    assert body["code"] == "invalid-query"


_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def test_docs_page_uses_only_local_assets(client: TestClient) -> None:
    page = client.get("/v1.1/api.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not _REMOTE.search(page.text), "the page must not load anything from another host"
    assets = _ASSET.findall(page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        response = client.get(f"/v1.1/{asset}")  # relative to /v1.1/api.html
        assert response.status_code == 200, asset
        assert response.content
    init = client.get("/v1.1/api-assets/api.js").text
    assert "http" not in init and 'url: "api"' in init
    assert client.get("/v1.1/api-assets/swagger-ui/LICENSE").status_code == 200
    assert client.get("/v1.1/api-assets/nothing.js").status_code == 404
    refused = client.post("/v1.1/api.html")
    assert refused.status_code == 405
    assert refused.json()["code"] == "method-not-allowed"


# -- schemathesis ---------------------------------------------------------------------------


SCHEMA = schemathesis.openapi.from_asgi("/v1.1/api", _without_lifespan)
# Positive data only: negative generation is slow on these schemas and cannot negate some of them
# (the schema of a non-null "any value"); malformed input is covered by tests/api/test_bad_input.py.
SCHEMA.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True
)
# Fuzzing only. The coverage phase enumerates boundary values of every schema, and the examples
# phase builds bodies from every combination of the schemas' examples while collecting (some
# 90,000 for ~290 operations, minutes before the first test): both far too many here.
SCHEMA.config.phases.update(phases=["fuzzing"])


@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_server_conforms_to_document(app: Starlette, case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )


def test_document_describes_access_control(document: dict[str, Any]) -> None:
    """Tokens are optional (anonymous requests are allowed unless the server says otherwise); 401 and 403 are
    documented on every operation (docs/access.md)."""
    assert set(document["components"]["securitySchemes"]) == {"token", "basic"}
    assert {} in document["security"] and {"token": []} in document["security"]
    sets = {t.set_name for t in sensing_registry()}
    for path, ops in document["paths"].items():
        if path.lstrip("/").split("(")[0].split("/")[0] not in sets:
            continue  # the service root and the documentation answer everyone
        for method, op in ops.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)
