"""Conformance: SensorThings API 1.1 batch requests (OGC 18-088 clause 11, req/batch-request/batch-request).

Both formats: the OData 4.01 JSON batch (``{"requests": [...]}`` → ``{"responses": [...]}``) and the
OData 4.0 multipart/mixed batch with change sets. The bad-input side is in test_bad_input.py; these
tests send valid batches and check every response, in order, and the state of the store afterwards.

Known server bugs and non-conformances are ``xfail(strict=True)``: a fix turns them into failures that
say "remove the xfail marker".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from stadsdata.api.app import create_app
from stadsdata.settings import Settings
from tests import fixtures as f
from tests.conftest import BASE

V = "/v1.1"


# -- helpers ---------------------------------------------------------------------------------------------------------


def get(client: TestClient, path: str) -> Any:
    r = client.get(f"{V}/{path}")
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
    return r.json()


def names(client: TestClient, entity_set: str) -> list[str]:
    return [e["name"] for e in get(client, f"{entity_set}?$select=name&$orderby=@iot.id")["value"]]


def setup_thing(client: TestClient) -> None:
    """Thing 1 with Location 1 and Datastream 1 (Sensor 1, ObservedProperty 1)."""
    r = client.post(f"{V}/Things", json=f.full_thing())
    assert r.status_code == 201, r.text


def req(rid: str, method: str, url: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "method": method, "url": url, **extra}
    if body is not None:
        out["body"] = body
    return out


def batch(client: TestClient, *requests: dict[str, Any], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """POST a JSON batch; the responses, checked to answer the requests one for one, in order."""
    r = client.post(f"{V}/$batch", json={"requests": list(requests)}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    responses: list[dict[str, Any]] = r.json()["responses"]
    assert [x["id"] for x in responses] == [q["id"] for q in requests]
    return responses


def datastream_body(name: str, **links: Any) -> dict[str, Any]:
    return f.datastream(name, **{"Thing": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}, **links})


def assert_json_error(response: dict[str, Any], status: int, needle: str) -> None:
    assert response["status"] == status, response
    assert response["headers"] == {"content-type": "application/json"}, response
    body = response["body"]
    assert isinstance(body, dict) and set(body) >= {"code", "message"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert needle in body["message"], body


# multipart -----------------------------------------------------------------------------------------------------------


def http_part(request: str, content_id: str | None = None, eol: str = "\r\n") -> str:
    """One application/http part; ``request`` is the request line, headers and body joined by ``eol``."""
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    return eol.join(head) + eol + eol + request


def changeset(boundary: str, *parts: str, eol: str = "\r\n") -> str:
    inner = "".join(f"--{boundary}{eol}{p}{eol}" for p in parts) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}{eol}{eol}{inner}"


def multipart(boundary: str, *parts: str, eol: str = "\r\n") -> bytes:
    return ("".join(f"--{boundary}{eol}{p}{eol}" for p in parts) + f"--{boundary}--{eol}").encode()


def http_request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> str:
    lines = [f"{method} {url} HTTP/1.1", "Host: testserver"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is None:
        return "\r\n".join(lines) + "\r\n"
    return "\r\n".join([*lines, "Content-Type: application/json", "", json.dumps(body)])


@dataclass
class Part:
    """One response part of a multipart batch response."""

    status: int
    headers: dict[str, str]  # the inner HTTP response's headers, lower-case names
    body: str
    content_id: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


def _boundary(content_type: str) -> str:
    m = re.search(r"boundary=([^;\s]+)", content_type)
    assert m, content_type
    return m.group(1)


def _split(body: str, boundary: str) -> list[str]:
    pieces = body.split(f"--{boundary}")
    assert pieces[-1].strip() == "--", f"no closing delimiter: {body!r}"
    return [p.removeprefix("\r\n").removesuffix("\r\n") for p in pieces[1:-1]]


def _head(text: str) -> tuple[dict[str, str], str]:
    head, _, rest = text.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, rest


def parse_multipart(content_type: str, body: str) -> list[Part | ChangeSet]:
    out: list[Part | ChangeSet] = []
    for piece in _split(body, _boundary(content_type)):
        mime, rest = _head(piece)
        if mime["content-type"].startswith("multipart/mixed"):
            inner = parse_multipart(mime["content-type"], rest)
            assert all(isinstance(p, Part) for p in inner), inner
            out.append(ChangeSet([p for p in inner if isinstance(p, Part)]))
            continue
        assert mime["content-type"] == "application/http", mime
        assert mime["content-transfer-encoding"] == "binary", mime
        status_line, _, response = rest.partition("\r\n")
        m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", status_line)
        assert m, status_line
        headers, payload = _head(response)
        out.append(Part(int(m.group(1)), headers, payload, mime.get("content-id")))
    return out


def post_multipart(client: TestClient, raw: bytes, boundary: str) -> list[Part | ChangeSet]:
    r = client.post(f"{V}/$batch", content=raw, headers={"content-type": f"multipart/mixed; boundary={boundary}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("multipart/mixed; boundary="), r.headers
    return parse_multipart(r.headers["content-type"], r.text)


# -- JSON format: the four methods, in order -------------------------------------------------------------------------


def test_json_batch_runs_get_post_patch_delete_in_order(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("read", "GET", "Things(1)?$select=name"),
        req("new", "POST", "Sensors", f.sensor("Diver")),
        req("rename", "PATCH", "Things(1)", {"name": "Well Roombeek 14"}),
        req("reread", "GET", "Things(1)?$select=name,description"),
        req("drop", "DELETE", "Sensors(2)"),
        req("list", "GET", "Sensors?$select=name"),
    )
    assert [x["status"] for x in responses] == [200, 201, 200, 200, 200, 200]
    read, new, rename, reread, drop, listing = responses
    assert read["body"] == {"name": "Well Roombeek 12"}
    assert read["headers"] == {"content-type": "application/json"}
    # POST: 201, Location = selfLink, the created entity as the body
    assert new["headers"] == {"location": f"{BASE}/Sensors(2)", "content-type": "application/json"}
    assert new["body"] == {
        "@iot.id": 2,
        "@iot.selfLink": f"{BASE}/Sensors(2)",
        **f.sensor("Diver"),
        "Datastreams@iot.navigationLink": f"{BASE}/Sensors(2)/Datastreams",
        "MultiDatastreams@iot.navigationLink": f"{BASE}/Sensors(2)/MultiDatastreams",
    }
    # PATCH: the updated entity; the next GET of the same batch sees it
    assert rename["body"]["@iot.id"] == 1 and rename["body"]["name"] == "Well Roombeek 14"
    assert rename["body"]["description"] == "groundwater well"
    assert reread["body"] == {"name": "Well Roombeek 14", "description": "groundwater well"}
    # DELETE: no body; the next GET no longer lists it
    assert "body" not in drop and "atomicityGroup" not in drop
    assert listing["body"] == {"value": [{"name": "Keller 36XW"}]}
    # ... and all of it was committed
    assert names(client, "Things") == ["Well Roombeek 14"]
    assert names(client, "Sensors") == ["Keller 36XW"]


@pytest.mark.parametrize(
    "url",
    [
        "Things(1)?$select=name",
        "/v1.1/Things(1)?$select=name",
        "/Things(1)?$select=name",
        f"{BASE}/Things(1)?$select=name",
    ],
    ids=["relative", "absolute-path", "root-relative", "full-url"],
)
def test_json_batch_url_forms(client: TestClient, url: str) -> None:
    """OData: an inner URL may be relative to the service root, an absolute path, or an absolute URL."""
    setup_thing(client)
    [response] = batch(client, req("1", "GET", url))
    assert response["status"] == 200 and response["body"] == {"name": "Well Roombeek 12"}


def test_json_batch_put_and_json_patch(client: TestClient) -> None:
    setup_thing(client)
    patch_doc = [{"op": "replace", "path": "/name", "value": "patched"}]
    responses = batch(
        client,
        req("1", "PATCH", "Things(1)", patch_doc, headers={"Content-Type": "application/json-patch+json"}),
        req("2", "PUT", "Sensors(1)", f.sensor("Diver")),
    )
    assert [x["status"] for x in responses] == [200, 200]
    assert responses[0]["body"]["name"] == "patched"
    assert responses[1]["body"]["name"] == "Diver"
    assert names(client, "Things") == ["patched"]
    assert names(client, "Sensors") == ["Diver"]


def test_json_batch_reads_properties_values_and_refs(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("1", "GET", "Things(1)/name"),
        req("2", "GET", "Things(1)/name/$value"),
        req("3", "GET", "Things(1)/Datastreams/$ref"),
        req("4", "GET", "Datastreams?$count=true&$select=name&$expand=Sensor($select=name)"),
    )
    assert [x["status"] for x in responses] == [200] * 4
    assert responses[0]["body"] == {"name": "Well Roombeek 12"}
    assert responses[1]["headers"] == {"content-type": "text/plain; charset=utf-8"}
    assert responses[1]["body"] == "Well Roombeek 12"
    assert responses[2]["body"] == {"value": [{"@iot.selfLink": f"{BASE}/Datastreams(1)"}]}
    assert responses[3]["body"] == {"@iot.count": 1, "value": [{"name": "level", "Sensor": {"name": "Keller 36XW"}}]}


# -- atomicity groups ------------------------------------------------------------------------------------------------


def test_atomicity_group_commits_together_with_references(client: TestClient) -> None:
    """A group creating a Thing, a Datastream under it ($thing/...) and an Observation under that ($ds/...)."""
    setup_thing(client)
    thing = f.thing("Well Deppenbroek 3", Locations=[f.location("Deppenbroek 3")])
    ds = f.datastream("d2", Sensor={"@iot.id": 1}, ObservedProperty={"@iot.id": 1})
    observation = {"result": 0.25, "phenomenonTime": "2026-03-01T12:00:00+01:00"}
    responses = batch(
        client,
        req("thing", "POST", "Things", thing, atomicityGroup="g"),
        req("ds", "POST", "$thing/Datastreams", ds, atomicityGroup="g", dependsOn=["thing"]),
        req("obs", "POST", "$ds/Observations", observation, atomicityGroup="g", dependsOn=["ds"]),
    )
    assert [(x["status"], x["atomicityGroup"]) for x in responses] == [(201, "g")] * 3
    assert [x["headers"]["location"] for x in responses] == [
        f"{BASE}/Things(2)",
        f"{BASE}/Datastreams(2)",
        f"{BASE}/Observations(1)",
    ]
    assert get(client, "Datastreams(2)/Thing?$select=name") == {"name": "Well Deppenbroek 3"}
    assert get(client, "Observations(1)?$select=result,phenomenonTime") == {
        "result": 0.25,
        "phenomenonTime": "2026-03-01T11:00:00Z",
    }
    assert get(client, "Observations(1)/Datastream?$select=name") == {"name": "d2"}
    assert get(client, "Observations(1)/FeatureOfInterest?$select=name") == {"name": "Deppenbroek 3"}


def test_failing_atomicity_group_rolls_back_the_group_only(client: TestClient) -> None:
    """One failing request undoes the group's earlier changes; requests outside the group keep theirs."""
    setup_thing(client)
    responses = batch(
        client,
        req("before", "POST", "Sensors", f.sensor("before")),
        req("t", "POST", "Things", f.thing("rolled back"), atomicityGroup="g"),
        req("p", "PATCH", "Things(1)", {"name": "rolled back too"}, atomicityGroup="g"),
        req("d", "DELETE", "Sensors(1)", atomicityGroup="g"),
        req("bad", "POST", "Locations", {**f.location("bad"), "encodingType": 5}, atomicityGroup="g"),
        req("after", "POST", "Sensors", f.sensor("after")),
    )
    assert [(x["id"], x["status"]) for x in responses] == [
        ("before", 201),
        ("t", 400),
        ("p", 400),
        ("d", 400),
        ("bad", 400),
        ("after", 201),
    ]
    for x in responses[1:5]:
        assert x["atomicityGroup"] == "g"
        assert_json_error(x, 400, "encodingType")
    assert "atomicityGroup" not in responses[0] and "atomicityGroup" not in responses[5]
    assert names(client, "Things") == ["Well Roombeek 12"]
    assert names(client, "Sensors") == ["Keller 36XW", "before", "after"]
    assert names(client, "Locations") == ["Roombeek 12"]
    assert get(client, "Datastreams(1)/Sensor?$select=name") == {"name": "Keller 36XW"}


def test_two_groups_fail_and_succeed_independently(client: TestClient) -> None:
    responses = batch(
        client,
        req("1", "POST", "Sensors", f.sensor("a1"), atomicityGroup="a"),
        req("2", "POST", "Sensors", f.sensor("a2"), atomicityGroup="a"),
        req("3", "POST", "Sensors", f.sensor("b1"), atomicityGroup="b"),
        req("4", "DELETE", "Sensors(99)", atomicityGroup="b"),
    )
    assert [x["status"] for x in responses] == [201, 201, 404, 404]
    assert_json_error(responses[3], 404, "no Sensor with @iot.id 99")
    assert names(client, "Sensors") == ["a1", "a2"]


def test_reference_to_a_rolled_back_entity_fails(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("t", "POST", "Things", f.thing("gone"), atomicityGroup="g"),
        req("x", "POST", "Things", {"name": 5}, atomicityGroup="g"),
        req("ds", "POST", "$t/Datastreams", datastream_body("orphan", Sensor={"@iot.id": 1})),
        req("dep", "GET", "Things", dependsOn=["t"]),
    )
    assert [x["status"] for x in responses] == [400, 400, 400, 424]
    assert_json_error(responses[2], 400, "$t")
    assert_json_error(responses[3], 424, "depends on failed request t")
    assert names(client, "Datastreams") == ["level"]


def test_non_adjacent_atomicity_group_is_refused(client: TestClient) -> None:
    """OData JSON 4.01 §19.1: the requests of an atomicity group must be adjacent."""
    doc = {
        "requests": [
            req("a", "POST", "Sensors", f.sensor("in g"), atomicityGroup="g"),
            req("b", "POST", "Sensors", f.sensor("outside")),
            req("c", "POST", "Sensors", {"name": 5}, atomicityGroup="g"),
        ]
    }
    r = client.post(f"{V}/$batch", json=doc)
    assert r.status_code == 400 and "atomicity group 'g' must be adjacent" in r.json()["message"], r.text
    assert names(client, "Sensors") == []


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([req("g", "GET", "Things"), req("b", "GET", "Things", atomicityGroup="g")], "has the name of a request"),
        ([req("a", "POST", "Sensors", f.sensor("x"), atomicityGroup="a")], "has the name of a request"),
        ([req("a", "POST", "Sensors", f.sensor("x"), atomicityGroup="g"), req("g", "GET", "Things")], "used twice"),
        ([req("a", "POST", "Sensors", f.sensor("x"), atomicityGroup="g", dependsOn=["g"])], "other than its own"),
    ],
)
def test_group_names_are_unique_and_not_depended_on_from_inside(
    client: TestClient, requests: list[dict[str, Any]], message: str
) -> None:
    r = client.post(f"{V}/$batch", json={"requests": requests})
    assert r.status_code == 400 and message in r.json()["message"], r.text


# -- dependsOn and $<id> references ----------------------------------------------------------------------------------


def test_url_reference_to_an_entity_created_earlier(client: TestClient) -> None:
    """OData Content-ID referencing: an inner URL starting with $<id> is the entity request <id> created."""
    setup_thing(client)
    responses = batch(
        client,
        req("s", "POST", "Sensors", f.sensor("Diver")),
        req("ds", "POST", "$s/Datastreams", datastream_body("via sensor"), dependsOn=["s"]),
        req("read", "GET", "$s?$select=name", dependsOn=["s"]),
        req("nav", "GET", "$s/Datastreams?$select=name", dependsOn=["ds"]),
        req("upd", "PATCH", "$ds", {"description": "patched through $ds"}, dependsOn=["ds"]),
        req("del", "DELETE", "$s", dependsOn=["upd"]),
    )
    assert [x["status"] for x in responses] == [201, 201, 200, 200, 200, 200]
    assert responses[1]["headers"]["location"] == f"{BASE}/Datastreams(2)"
    assert responses[2]["body"] == {"name": "Diver"}
    assert responses[3]["body"] == {"value": [{"name": "via sensor"}]}
    assert responses[4]["body"]["@iot.id"] == 2 and responses[4]["body"]["description"] == "patched through $ds"
    # deleting the Sensor deletes its Datastream (req/create-update-delete/delete-entity)
    assert names(client, "Sensors") == ["Keller 36XW"]
    assert names(client, "Datastreams") == ["level"]


def test_depends_on_a_failed_request_is_424_and_the_rest_runs(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("bad", "PATCH", "Things(9)", {"name": "x"}),
        req("dep", "POST", "Sensors", f.sensor("never"), dependsOn=["bad"]),
        req("dep2", "GET", "Sensors", dependsOn=["dep"]),
        req("free", "POST", "Sensors", f.sensor("free")),
    )
    assert [x["status"] for x in responses] == [404, 424, 424, 201]
    assert_json_error(responses[0], 404, "no Thing with @iot.id 9")
    assert_json_error(responses[1], 424, "request dep depends on failed request bad")
    assert_json_error(responses[2], 424, "request dep2 depends on failed request dep")
    assert names(client, "Sensors") == ["Keller 36XW", "free"]


def test_body_reference_to_an_entity_created_earlier(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("s", "POST", "Sensors", f.sensor("Diver"), atomicityGroup="g"),
        req(
            "ds",
            "POST",
            "Datastreams",
            datastream_body("d2", Sensor={"@iot.id": "$s"}),
            atomicityGroup="g",
            dependsOn=["s"],
        ),
    )
    assert [x["status"] for x in responses] == [201, 201], responses
    assert get(client, "Datastreams(2)/Sensor?$select=name") == {"name": "Diver"}


def test_depends_on_an_atomicity_group(client: TestClient) -> None:
    doc = {
        "requests": [
            req("a", "POST", "Sensors", f.sensor("in g"), atomicityGroup="g"),
            req("b", "GET", "Sensors?$select=name", dependsOn=["g"]),
        ]
    }
    r = client.post(f"{V}/$batch", json=doc)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["responses"]] == [201, 200]


def test_depends_on_a_failed_atomicity_group_is_424(client: TestClient) -> None:
    responses = batch(
        client,
        req("a", "POST", "Sensors", f.sensor("in g"), atomicityGroup="g"),
        req("c", "POST", "Sensors", {"name": 5}, atomicityGroup="g"),
        req("b", "GET", "Sensors", dependsOn=["g"]),
    )
    assert [x["status"] for x in responses] == [400, 400, 424]
    assert_json_error(responses[2], 424, "depends on failed request g")
    assert names(client, "Sensors") == []


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"Sensor": {"@iot.id": "$t"}}, "'$t' is one of the Things, where one of the Sensors belongs"),
        ({"Sensor": {"@iot.id": "$nope"}}, "'$nope' refers to no entity created earlier in this batch"),
    ],
)
def test_body_reference_of_the_wrong_type_or_unknown_is_400(
    client: TestClient, reference: dict[str, Any], message: str
) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("t", "POST", "Things", f.thing("T2")),
        req("ds", "POST", "Datastreams", datastream_body("d2", **reference)),
    )
    assert [x["status"] for x in responses] == [201, 400]
    assert_json_error(responses[1], 400, message)
    assert names(client, "Datastreams") == ["level"]


# -- errors ----------------------------------------------------------------------------------------------------------


def test_inner_errors_are_json_errors_and_do_not_stop_the_batch(client: TestClient) -> None:
    setup_thing(client)
    responses = batch(
        client,
        req("1", "GET", "Things(42)"),
        req("2", "GET", "Things?$filter=name eq"),
        req("3", "POST", "Things(1)", f.thing()),
        req("4", "GET", "Things?$select=name"),
    )
    assert [x["status"] for x in responses] == [404, 400, 405, 200]
    assert_json_error(responses[0], 404, "nothing found at Things(42)")
    assert_json_error(responses[1], 400, "$filter")
    assert responses[2]["status"] == 405 and responses[2]["body"]["code"]
    assert responses[2]["headers"]["allow"]
    assert responses[3]["body"] == {"value": [{"name": "Well Roombeek 12"}]}


# -- authorization ---------------------------------------------------------------------------------------------------


class RecordAuthorization:
    """ASGI middleware that records the Authorization header every request reaches the app with."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str | None]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization")
            self.seen.append((scope["path"], None if auth is None else auth.decode()))
        await self.app(scope, receive, send)


def test_authorization_reaches_inner_requests_and_is_not_echoed(settings: Settings) -> None:
    """The batch's Authorization applies to each inner request without its own; an inner request's own
    Authorization applies to it alone; no Authorization appears in any response."""
    seen: list[tuple[str, str | None]] = []
    app = create_app(settings)
    app.add_middleware(RecordAuthorization, seen=seen)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        doc = {
            "requests": [
                req("1", "GET", "Things"),
                req("2", "GET", "Sensors", headers={"Authorization": "Bearer inner"}),
                req("3", "GET", "Locations"),
            ]
        }
        r = c.post(f"{V}/$batch", json=doc, headers={"Authorization": "Bearer outer"})
        assert r.status_code == 200, r.text
        assert "authorization" not in {k.lower() for k in r.headers}
        assert "Bearer" not in r.text
        raw = multipart(
            "b",
            http_part(http_request("GET", "Things", headers={"Authorization": "Bearer part"})),
            http_part(http_request("GET", "Sensors")),
        )
        r = c.post(
            f"{V}/$batch",
            content=raw,
            headers={"content-type": "multipart/mixed; boundary=b", "Authorization": "Bearer outer"},
        )
        assert r.status_code == 200, r.text
        assert "Bearer" not in r.text and "authorization" not in r.text.lower()
    assert seen == [
        ("/v1.1/$batch", "Bearer outer"),
        ("/v1.1/Things", "Bearer outer"),
        ("/v1.1/Sensors", "Bearer inner"),
        ("/v1.1/Locations", "Bearer outer"),
        ("/v1.1/$batch", "Bearer outer"),
        ("/v1.1/Things", "Bearer part"),
        ("/v1.1/Sensors", "Bearer outer"),
    ]


def test_no_authorization_is_invented_for_inner_requests(settings: Settings) -> None:
    seen: list[tuple[str, str | None]] = []
    app = create_app(settings)
    app.add_middleware(RecordAuthorization, seen=seen)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        doc = {
            "requests": [req("1", "GET", "Things", headers={"Authorization": "Bearer one"}), req("2", "GET", "Things")]
        }
        assert c.post(f"{V}/$batch", json=doc).status_code == 200
    assert seen == [("/v1.1/$batch", None), ("/v1.1/Things", "Bearer one"), ("/v1.1/Things", None)]


# -- multipart format ------------------------------------------------------------------------------------------------


def test_multipart_batch_with_a_changeset(client: TestClient) -> None:
    """The example of STA 1.1 clause 11: a GET, a change set with Content-ID references, more GETs."""
    setup_thing(client)
    raw = multipart(
        "batch_36522ad7",
        http_part(http_request("GET", "/v1.1/Things(1)?$select=name")),
        changeset(
            "changeset_77162fcd",
            http_part(http_request("POST", "/v1.1/Sensors", f.sensor("Diver")), content_id="1"),
            http_part(http_request("POST", "$1/Datastreams", datastream_body("d2")), content_id="2"),
            http_part(http_request("PATCH", "Things(1)", {"name": "Well Roombeek 14"}), content_id="3"),
        ),
        # a GET with nothing after its request line: no headers, no blank line
        http_part("GET Datastreams?$select=name&$orderby=@iot.id HTTP/1.1"),
        http_part(http_request("DELETE", "Datastreams(2)")),
        http_part(http_request("GET", "Things(1)/Datastreams/$count")),
    )
    out = post_multipart(client, raw, "batch_36522ad7")
    assert [type(p).__name__ for p in out] == ["Part", "ChangeSet", "Part", "Part", "Part"]
    first, cs, listing, deleted, count = out
    assert isinstance(first, Part) and isinstance(cs, ChangeSet) and isinstance(listing, Part)
    assert isinstance(deleted, Part) and isinstance(count, Part)
    assert (first.status, first.json()) == (200, {"name": "Well Roombeek 12"})
    assert first.headers == {"content-type": "application/json"}
    assert [(p.content_id, p.status) for p in cs.parts] == [("1", 201), ("2", 201), ("3", 200)]
    assert [p.headers.get("location") for p in cs.parts] == [f"{BASE}/Sensors(2)", f"{BASE}/Datastreams(2)", None]
    assert cs.parts[0].json()["name"] == "Diver"
    assert cs.parts[1].json()["@iot.selfLink"] == f"{BASE}/Datastreams(2)"
    assert cs.parts[2].json()["name"] == "Well Roombeek 14"
    assert (listing.status, listing.json()) == (200, {"value": [{"name": "level"}, {"name": "d2"}]})
    assert (deleted.status, deleted.body) == (200, "")
    # /$count is OData, not a path segment of STA 1.1: an error, as JSON
    assert count.status == 400 and count.headers["content-type"] == "application/json"
    assert count.json() == {"code": "bad-request", "message": "'$count' is not a valid path segment"}
    assert get(client, "Sensors(2)/Datastreams") == {"value": []}
    assert names(client, "Things") == ["Well Roombeek 14"]


@pytest.mark.parametrize("eol", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_multipart_get_without_headers(client: TestClient, eol: str) -> None:
    """A part holding only a request line, ended by a newline or by the boundary, in CRLF or bare-LF bodies."""
    setup_thing(client)
    raw = multipart(
        "b",
        http_part(f"GET Things?$select=name HTTP/1.1{eol}", eol=eol),
        http_part("GET Sensors?$select=name HTTP/1.1", eol=eol),
        eol=eol,
    )
    out = post_multipart(client, raw, "b")
    assert [(p.status, p.json()) for p in out if isinstance(p, Part)] == [
        (200, {"value": [{"name": "Well Roombeek 12"}]}),
        (200, {"value": [{"name": "Keller 36XW"}]}),
    ]
    assert len(out) == 2


def test_multipart_failing_changeset_rolls_back_only_itself(client: TestClient) -> None:
    setup_thing(client)
    raw = multipart(
        "b",
        http_part(http_request("POST", "Sensors", f.sensor("before"))),
        changeset(
            "cs",
            http_part(http_request("POST", "Things", f.thing("rolled back")), content_id="1"),
            http_part(http_request("POST", "$1/Locations", f.location("rolled back")), content_id="2"),
            http_part(http_request("PATCH", "Things(1)", {"name": 5}), content_id="3"),
        ),
        http_part(http_request("GET", "Things?$select=name")),
    )
    out = post_multipart(client, raw, "b")
    assert len(out) == 3
    before, cs, after = out
    assert isinstance(before, Part) and before.status == 201
    assert isinstance(after, Part) and (after.status, after.json()) == (200, {"value": [{"name": "Well Roombeek 12"}]})
    failed = cs.parts if isinstance(cs, ChangeSet) else [cs]
    for p in failed:
        assert p.status == 400, p
        assert p.headers["content-type"] == "application/json"
        assert "name must be a string" in p.json()["message"]
    assert names(client, "Things") == ["Well Roombeek 12"]
    assert names(client, "Locations") == ["Roombeek 12"]
    assert names(client, "Sensors") == ["Keller 36XW", "before"]


def test_multipart_failed_changeset_is_one_response(client: TestClient) -> None:
    setup_thing(client)
    raw = multipart(
        "b",
        changeset(
            "cs",
            http_part(http_request("POST", "Sensors", f.sensor("x")), content_id="1"),
            http_part(http_request("PATCH", "Things(1)", {"name": 5}), content_id="2"),
        ),
    )
    [only] = post_multipart(client, raw, "b")
    assert isinstance(only, Part), only
    assert only.status == 400 and "name must be a string" in only.json()["message"]


def test_multipart_body_reference_to_an_entity_created_earlier(client: TestClient) -> None:
    setup_thing(client)
    raw = multipart(
        "b",
        changeset(
            "cs",
            http_part(http_request("POST", "Sensors", f.sensor("Diver")), content_id="1"),
            http_part(http_request("POST", "Datastreams", datastream_body("d2", Sensor={"@iot.id": "$1"})), "2"),
        ),
    )
    [cs] = post_multipart(client, raw, "b")
    assert isinstance(cs, ChangeSet) and [p.status for p in cs.parts] == [201, 201], cs
    assert get(client, "Datastreams(2)/Sensor?$select=name") == {"name": "Diver"}


def test_multipart_inner_error_is_a_json_error(client: TestClient) -> None:
    raw = multipart("b", http_part(http_request("GET", "Things(7)")), http_part(http_request("GET", "Nope")))
    out = post_multipart(client, raw, "b")
    assert [p.status for p in out if isinstance(p, Part)] == [404, 404]
    for p in out:
        assert isinstance(p, Part)
        assert p.headers == {"content-type": "application/json"}
        assert set(p.json()) == {"code", "message"} and p.json()["code"] == "not-found"
    assert isinstance(out[0], Part) and out[0].json()["message"] == "nothing found at Things(7)"
