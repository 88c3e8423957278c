"""Operations: health probes, Prometheus metrics, request ids and the access log."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from stadsdata.api import ops
from stadsdata.model.entities import sensing_registry
from tests import fixtures as f

V = "/v1.1"


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of /metrics, parsed by prometheus-client's own parser: (name, labels) → value."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_liveness_and_readiness(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    r = client.get("/health/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready", "store": "ok"}


def test_readiness_is_503_when_the_store_fails(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(client.app.state.store, "ping", broken)  # type: ignore[attr-defined]
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json() == {"status": "unavailable", "store": "OSError"}
    assert client.get("/health/live").status_code == 200


def test_openmetrics_when_the_scraper_asks_for_it(client: TestClient) -> None:
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")


def test_requests_are_counted_and_timed_per_route_class(client: TestClient) -> None:
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    for i in (1, 1, 2):
        client.get(f"{V}/Things({i})/Datastreams?$filter=name eq 'secret'")
    client.get("/no/such/path/12345")
    m = samples(client)
    route = "/v1.1/Things(id)/Datastreams"
    assert m[("stadsdata_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 2
    assert m[("stadsdata_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] == 1
    assert m[("stadsdata_http_requests_total", (("method", "POST"), ("route", "/v1.1/Things"), ("status", "201")))] == 1
    assert m[("stadsdata_http_requests_total", (("method", "GET"), ("route", "other"), ("status", "404")))] == 1
    assert m[("stadsdata_http_request_seconds_count", (("method", "GET"), ("route", route)))] == 3
    assert m[("stadsdata_store_seconds_count", (("kind", "read"),))] >= 3
    assert m[("stadsdata_store_seconds_count", (("kind", "write"),))] >= 1
    assert m[("stadsdata_store", (("what", "reader_connections"),))] >= 1
    assert ("stadsdata_store", (("what", "queued_writes"),)) in m
    # no label carries a value from the request: ids, queries and unknown names are not in the output
    text = client.get("/metrics").text
    assert "secret" not in text and "12345" not in text and "Things(1)" not in text


def test_ingested_and_rejected_observations(client: TestClient) -> None:
    assert client.post(f"{V}/Things", json=f.full_thing()).status_code == 201
    obs = {"phenomenonTime": "2026-01-01T00:00:00Z", "result": 1, "Datastream": {"@iot.id": 1}}
    assert client.post(f"{V}/Observations", json=obs).status_code == 201
    rows = [["2026-01-01T01:00:00Z", 2], ["not a time", 3], ["2026-01-01T02:00:00Z", 4]]
    body = [{"Datastream": {"@iot.id": 1}, "components": ["phenomenonTime", "result"], "dataArray": rows}]
    r = client.post(f"{V}/CreateObservations", json=body)
    assert r.status_code == 201 and r.json()[1].startswith("error")
    m = samples(client)
    assert m[("stadsdata_observations_ingested_total", (("path", "http"),))] == 3
    assert m[("stadsdata_observations_rejected_total", (("path", "http"),))] == 1


def test_request_id_is_returned_and_taken_over_when_plain(client: TestClient) -> None:
    own = client.get(f"{V}/Things").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", own)
    assert client.get(f"{V}/Things").headers["x-request-id"] != own
    assert client.get(f"{V}/Things", headers={"X-Request-Id": "lb-42.a_b"}).headers["x-request-id"] == "lb-42.a_b"
    odd = client.get(f"{V}/Things", headers={"X-Request-Id": "a b<script>"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", odd)
    assert client.get("/nowhere").headers["x-request-id"]  # on errors too


def test_one_json_access_line_per_request_without_personal_data(client: TestClient) -> None:
    stream = io.StringIO()
    ops.configure_logging(stream=stream)
    try:
        r = client.get(
            f"{V}/Things(7)/Datastreams?$filter=name eq 'Jan Jansen'",
            headers={"X-Request-Id": "req-1", "Authorization": "Bearer s3cr3t", "X-Forwarded-For": "192.0.2.7"},
        )
        assert r.status_code == 404
    finally:
        logging.getLogger("stadsdata").handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [x for x in lines if x["logger"] == "stadsdata.access"]
    assert line["request_id"] == "req-1"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/v1.1/Things(id)/Datastreams", 404)
    assert line["duration_ms"] > 0 and line["bytes"] > 0 and line["level"] == "info"
    raw = stream.getvalue()
    for secret in ("Jansen", "s3cr3t", "192.0.2.7", "testclient", "Things(7)"):
        assert secret not in raw


def test_readable_lines_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    ops.configure_logging(stream=stream)
    try:
        logging.getLogger("stadsdata.access").info(
            "%s %s %d", "GET", "/v1.1", 200, extra={"request_id": "x1", "duration_ms": 1.25, "bytes": 10}
        )
    finally:
        logging.getLogger("stadsdata").handlers.clear()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    GET /v1\.1 200  1\.2 ms  10 B  id=x1\n", stream.getvalue())


def test_json_lines_to_a_file_are_buffered_briefly_and_warnings_at_once(tmp_path: Path) -> None:
    """Access lines to a file or pipe wait at most ``FLUSH_EVERY`` seconds in memory; a warning is written at
    once (with the lines before it), and everything is written when logging shuts down."""
    path = tmp_path / "server.log"
    with path.open("w") as stream:
        ops.configure_logging(stream=stream)
        try:
            access = logging.getLogger("stadsdata.access")
            access.info("%s %s %d", "GET", "/v1.1", 200, extra={"request_id": "a1"})
            assert path.read_text() == ""  # still in memory: no system call per line
            deadline = time.monotonic() + 10 * ops.FLUSH_EVERY
            while not path.read_text() and time.monotonic() < deadline:
                time.sleep(ops.FLUSH_EVERY / 4)
            assert [json.loads(x)["request_id"] for x in path.read_text().splitlines()] == ["a1"]
            access.info("%s %s %d", "GET", "/v1.1", 200, extra={"request_id": "a2"})
            logging.getLogger("stadsdata.store").warning("the disk is nearly full")
            lines = [json.loads(x) for x in path.read_text().splitlines()]
            assert [x.get("request_id") or x["message"] for x in lines] == ["a1", "a2", "the disk is nearly full"]
            access.info("%s %s %d", "GET", "/v1.1", 200, extra={"request_id": "a3"})
        finally:
            for handler in logging.getLogger("stadsdata").handlers:
                handler.close()  # as logging.shutdown does at exit
            logging.getLogger("stadsdata").handlers.clear()
    assert json.loads(path.read_text().splitlines()[-1])["request_id"] == "a3"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1.1/Things(1)/Datastreams(22)/Observations", "/v1.1/Things(id)/Datastreams(id)/Observations"),
        ("/v1.1/Observations(5)/result/$value", "/v1.1/Observations(id)/result/$value"),
        ("/v1.1/Datastreams('x')/Thing/$ref", "/v1.1/Datastreams(id)/Thing/$ref"),
        ("/v1.1/$batch", "/v1.1/$batch"),
        ("/v1.1/Nonsense(1)", "other"),
        ("/wp-login.php", "other"),
    ],
)
def test_route_classes(path: str, route: str) -> None:
    known = ops.known_segments(sensing_registry(), ("$batch", "CreateObservations"))
    assert ops.route_class(path, known) == route
