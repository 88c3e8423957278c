"""`stadsdata backup` while a real server ingests, then `stadsdata restore`: nothing acknowledged is lost.

A `stadsdata serve` process takes a continuous stream of Observation POSTs; `stadsdata backup`
runs (as its own process) in the middle of it. Every Observation answered 201 before the backup
started must be in the restored database, which must serve queries. On SQLite, and on PostgreSQL
when STADSDATA_TEST_POSTGRES is set.
"""

from __future__ import annotations

import http.client
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from stadsdata.api.app import create_app
from stadsdata.cli import main
from stadsdata.settings import Settings
from tests import fixtures as f
from tests.conftest import NO_MQTT, POSTGRES, STORES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stadsdata.cli", *args], capture_output=True, text=True, timeout=60)


class Served:
    """A `stadsdata serve` process on a free port."""

    def __init__(self, db: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stadsdata.cli",
                "serve",
                "--db",
                db,
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            try:
                if self.request("GET", "/v1.1")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("the server did not start")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = None if body is None else orjson.dumps(body)
            conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, orjson.loads(raw) if raw else None, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Writer(threading.Thread):
    """POSTs Observations one after another; records (id, monotonic time of the 201) of each."""

    def __init__(self, served: Served, datastream: int) -> None:
        super().__init__(daemon=True)
        self.served = served
        self.path = f"/v1.1/Datastreams({datastream})/Observations"
        self.acked: list[tuple[int, float]] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            body = {"phenomenonTime": f"2026-01-01T00:00:{n % 60:02d}Z", "result": n}
            try:
                status, doc, headers = self.served.request("POST", self.path, body)
            except Exception as e:  # recorded: the test fails on it
                self.failures.append(repr(e))
                continue
            if status != 201:
                self.failures.append(f"{status} {doc}")
                continue
            answered = time.monotonic()
            location = headers["location"]
            self.acked.append((int(location.rpartition("(")[2].rstrip(")")), answered))


def _pg_database(name: str) -> str:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
    base, _, _ = POSTGRES.rpartition("/")
    return f"{base}/{name}"


def _drop(name: str) -> None:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=STORES)
def databases(request: pytest.FixtureRequest, tmp_path: Path, worker_id: str) -> Iterator[tuple[str, str, Path]]:
    """The live database, the one to restore into, and the backup file."""
    if request.param == "postgresql":
        names = (f"stadsdata_backup_live_{worker_id}", f"stadsdata_backup_restored_{worker_id}")
        try:
            yield _pg_database(names[0]), _pg_database(names[1]), tmp_path / "backup.dump"
        finally:
            for name in names:
                _drop(name)
    else:
        yield str(tmp_path / "live.db"), str(tmp_path / "restored.db"), tmp_path / "backup.db"


def test_backup_during_ingestion_keeps_every_acknowledged_observation(databases: tuple[str, str, Path]) -> None:
    live, target, backup_file = databases
    served = Served(live)
    try:
        status, doc, _ = served.request("POST", "/v1.1/Things", f.full_thing())
        assert status == 201, doc
        status, doc, _ = served.request("GET", "/v1.1/Datastreams")
        datastream = doc["value"][0]["@iot.id"]
        writer = Writer(served, datastream)
        writer.start()
        try:
            deadline = time.monotonic() + 20
            while len(writer.acked) < 100 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(writer.acked) >= 100, writer.failures[:3]
            started = time.monotonic()
            done = _cli("backup", "--db", live, str(backup_file))
            finished = time.monotonic()
            assert done.returncode == 0, done.stderr
            assert "backed up" in done.stdout
            time.sleep(0.2)  # some more writes after the backup
        finally:
            writer.stopping.set()
            writer.join(timeout=30)
    finally:
        served.stop()
    assert not writer.failures, writer.failures[:3]
    before = {i for i, t in writer.acked if t < started}
    after = {i for i, t in writer.acked if t > finished}
    assert len(before) >= 100 and after, "the writer wrote before and after the backup"
    assert any(started < t < finished for _, t in writer.acked), "and while it ran"

    done = _cli("restore", str(backup_file), "--db", target)
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout

    settings = (
        Settings(db=target, **NO_MQTT) if "://" in target else Settings(db=target, synchronous="NORMAL", **NO_MQTT)
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        ids: set[int] = set()
        url: str | None = f"/v1.1/Datastreams({datastream})/Observations?$select=id&$top=10000"
        while url:
            r = client.get(url)
            assert r.status_code == 200, r.text
            ids |= {o["@iot.id"] for o in r.json()["value"]}
            url = r.json().get("@iot.nextLink")
        missing = before - ids
        assert not missing, f"{len(missing)} acknowledged observations missing, e.g. {sorted(missing)[:5]}"
        assert not ids - {i for i, _ in writer.acked}, "nothing in the backup that was not written"

        r = client.get(
            f"/v1.1/Datastreams({datastream})/Observations"
            "?$filter=result ge 10 and result le 20&$orderby=result desc&$count=true&$expand=Datastream($select=name)"
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert [o["result"] for o in body["value"]] == list(range(20, 9, -1))
        assert body["@iot.count"] == 11
        assert body["value"][0]["Datastream"]["name"] == "level"
        r = client.post(
            f"/v1.1/Datastreams({datastream})/Observations",
            json={"phenomenonTime": "2026-02-01T00:00:00Z", "result": -1},
        )
        assert r.status_code == 201, r.text


def test_sqlite_restore_refuses_a_database_with_data_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, other = str(tmp_path / "src.db"), str(tmp_path / "other.db")
    for db, name in ((src, "in the backup"), (other, "already there")):
        with TestClient(
            create_app(Settings(db=db, synchronous="NORMAL", **NO_MQTT)), base_url="http://testserver"
        ) as client:
            assert client.post("/v1.1/Things", json=f.thing(name)).status_code == 201
    assert main(["backup", "--db", src, str(tmp_path / "b.db")]) == 0
    assert main(["backup", "--db", src, str(tmp_path / "b.db")]) == 1
    assert "exists" in capsys.readouterr().err

    assert main(["restore", str(tmp_path / "b.db"), "--db", other]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "b.db"), "--db", other, "--force"]) == 0
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT name FROM things").fetchall() == [("in the backup",)]


def test_restore_checks_what_it_restores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    assert main(["restore", str(not_db), "--db", str(tmp_path / "x.db")]) == 1
    assert "not a SQLite database" in capsys.readouterr().err

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert main(["restore", str(foreign), "--db", str(tmp_path / "x.db")]) == 1
    assert "not a stadsdata database" in capsys.readouterr().err

    future = tmp_path / "future.db"
    with sqlite3.connect(future) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_future')")
    assert main(["restore", str(future), "--db", str(tmp_path / "x.db")]) == 1
    assert "9999_future" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_backup_progress_and_missing_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["backup", "--db", str(db), str(tmp_path / "b.db"), "--progress"]) == 0
    out = capsys.readouterr()
    assert "backup" in out.err and "100%" in out.err
    assert "backed up SQLite database" in out.out

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    assert main(["backup", "--db", "postgresql://u:secret@127.0.0.1:1/x", str(tmp_path / "c.dump")]) == 1
    err = capsys.readouterr().err
    assert "pg_dump is not installed" in err and "secret" not in err
