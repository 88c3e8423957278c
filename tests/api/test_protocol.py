"""The served HTTP protocol: each response in one write, and whole responses over a real connection."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.server import free_port
from stadsdata.api.protocol import _OneWrite
from tests import fixtures as f


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_head_and_body_go_out_in_one_write() -> None:
    t = Recorder()
    one = _OneWrite(t)
    one.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []
    one.write(b"{}")
    assert t.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    one.write(b"more")  # a streamed body's later parts go as they come
    assert t.writes[1:] == [b"more"]
    assert one.is_closing() is False  # the rest is the transport's


def test_an_interim_response_goes_at_once_and_a_close_sends_a_held_head() -> None:
    t = Recorder()
    one = _OneWrite(t)
    one.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    one.write(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
    one.close()
    assert t.writes[1:] == [b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n"]
    assert t.closed


def test_a_response_without_body_parts_is_released_by_its_end() -> None:
    t = Recorder()
    one = _OneWrite(t)
    one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\n\r\n")  # HEAD: uvicorn writes no body
    one.release()
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\n\r\n"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``stadsdata serve`` on a new SQLite database: its port."""
    tmp = tmp_path_factory.mktemp("protocol")
    port = free_port()
    cmd = [sys.executable, "-m", "stadsdata.cli", "serve", "--db", str(tmp / "p.db"), "--port", str(port)]
    with (tmp / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp / "stderr").read_text()
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _exchange(conn: socket.socket, request: bytes, head_only: bool = False) -> tuple[bytes, dict[str, str], bytes]:
    """Send ``request``; read one whole response (Content-Length or chunked): status line, headers, body."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    status, *lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode().strip() for k, v in (line.split(b":", 1) for line in lines)}
    if head_only:
        return status, headers, b""
    if "content-length" in headers:
        while len(rest) < int(headers["content-length"]):
            rest += conn.recv(65536)
        return status, headers, rest
    while not rest.endswith(b"0\r\n\r\n"):
        rest += conn.recv(65536)
    body, text = b"", rest
    while True:
        size, text = text.split(b"\r\n", 1)
        if int(size, 16) == 0:
            return status, headers, body
        body, text = body + text[: int(size, 16)], text[int(size, 16) + 2 :]


def _request(method: str, path: str, body: Any = None, extra: str = "") -> bytes:
    payload = b"" if body is None else orjson.dumps(body)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload


def test_responses_on_one_keep_alive_connection(served: int, tmp_path: Path) -> None:
    """Creates, reads, an error, HEAD and a request that waits for 100 Continue, one after another on one
    connection: every response arrives whole and in order."""
    with socket.create_connection(("127.0.0.1", served), timeout=10) as conn:
        body = f.datastream(
            Thing=f.thing(Locations=[f.location()]), Sensor=f.sensor(), ObservedProperty=f.observed_property()
        )
        status, headers, _ = _exchange(conn, _request("POST", "/v1.1/Datastreams", body))
        assert status == b"HTTP/1.1 201 Created" and headers["location"].endswith("/v1.1/Datastreams(1)")
        for i in range(3):
            status, _, created = _exchange(conn, _request("POST", "/v1.1/Datastreams(1)/Observations", {"result": i}))
            assert status == b"HTTP/1.1 201 Created" and orjson.loads(created)["result"] == i
        status, _, listed = _exchange(conn, _request("GET", "/v1.1/Datastreams(1)/Observations?$orderby=result"))
        assert status == b"HTTP/1.1 200 OK"
        assert [o["result"] for o in orjson.loads(listed)["value"]] == [0, 1, 2]
        status, _, problem = _exchange(conn, _request("GET", "/v1.1/Things(99)"))
        assert status == b"HTTP/1.1 404 Not Found" and b"99" in problem
        status, headers, _ = _exchange(conn, _request("HEAD", "/v1.1/Things"), head_only=True)
        assert status == b"HTTP/1.1 200 OK"
        # Pipelined: a HEAD (a response without body parts) and a GET sent together.
        conn.sendall(_request("HEAD", "/v1.1/Things") + _request("GET", "/v1.1/Things(99)"))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"}"):
            data += conn.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 404 Not Found" in data
        payload = orjson.dumps({"result": 3})
        conn.sendall(
            b"POST /v1.1/Datastreams(1)/Observations HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n"
        )
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
        status, _, created = _exchange(conn, payload)
        assert status == b"HTTP/1.1 201 Created" and orjson.loads(created)["result"] == 3
