"""Single-Observation POST rate: many sensors each posting one Observation per request.

    python -m benchmarks.post_rate                    # 20,000 POSTs over 32 keep-alive connections
    python -m benchmarks.post_rate --requests 50000 --connections 64 --synchronous NORMAL
    python -m benchmarks.post_rate --db postgresql://stadsdata@127.0.0.1:25432/city   # PostgreSQL

Starts `stadsdata serve` on a fresh SQLite database (or the PostgreSQL database given with
--db, which must exist; the rows written are removed afterwards) with a new Datastream, then a
concurrent keep-alive HTTP/1.1 client (asyncio, one process) posts ``--requests`` Observations,
each its own request, and each answered 201 only once committed. In the same run the same rows
are inserted into the same schema directly (sqlite3, or psycopg), two ways: one transaction per
row (what acknowledging each write separately costs without group commit) and all at once
(executemany; COPY on PostgreSQL), the ceiling. Prints the rates and their ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
from tqdm import tqdm

from benchmarks.rawdb import OBSERVATION_INSERT, raw_database
from benchmarks.server import Server
from stadsdata.cli import redact
from stadsdata.model.values import format_instant
from stadsdata.settings import Settings

START = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds

SETUP = {
    "name": "groundwater level",
    "description": "crawlspace well",
    "unitOfMeasurement": {"name": "metre", "symbol": "m", "definition": "http://qudt.org/vocab/unit/M"},
    "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
    "Thing": {
        "name": "well",
        "description": "groundwater well",
        "Locations": [
            {
                "name": "Roombeek",
                "description": "well",
                "encodingType": "application/geo+json",
                "location": {"type": "Point", "coordinates": [6.8937, 52.2215]},
            }
        ],
    },
    "Sensor": {"name": "s", "description": "d", "encodingType": "text/plain", "metadata": "m"},
    "ObservedProperty": {"name": "level", "definition": "http://example.org/level", "description": "d"},
}


def observation(i: int) -> dict[str, object]:
    return {"phenomenonTime": format_instant(START + i * 1_000_000), "result": round(0.5 + (i % 97) / 100, 2)}


async def post_all(
    port: int, path: str, bodies: list[bytes], connections: int, method: str = "POST", expect: bytes = b" 201 "
) -> tuple[float, list[float]]:
    """Send every body over ``connections`` keep-alive connections; return (seconds, latencies in ms)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    bar = tqdm(total=len(bodies), unit="req", desc=method, file=sys.stderr, mininterval=0.5)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
        try:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                writer.write(f"{head}{len(body)}\r\n\r\n".encode() + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                data = await reader.readexactly(length)
                latencies.append((time.perf_counter() - t) * 1000)
                if expect not in status_line:
                    raise SystemExit(f"{method} failed: {status_line!r} {data[:300]!r}")
                bar.update()
        finally:
            writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t
    bar.close()
    return elapsed, latencies


def raw_rates(rows: list[tuple[int, float]], synchronous: str) -> tuple[float, float]:
    """Rows per second into the same schema with sqlite3: one transaction per row, and one executemany."""
    rates: list[float] = []
    for per_row in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "raw.db"
            raw = raw_database(path, synchronous)
            sql = OBSERVATION_INSERT
            t = time.perf_counter()
            if per_row:
                for row in rows:
                    raw.execute("BEGIN")
                    raw.execute(sql, row)
                    raw.execute("COMMIT")
            else:
                raw.execute("BEGIN")
                raw.executemany(sql, rows)
                raw.execute("COMMIT")
            rates.append(len(rows) / (time.perf_counter() - t))
            raw.close()
    return rates[0], rates[1]


def raw_rates_postgres(db: str, datastream: int, rows: list[tuple[int, float]]) -> tuple[float, float]:
    """Rows per second into ``db`` with psycopg: one transaction per row, and one COPY; the rows are removed after."""
    insert = (
        "INSERT INTO observations (phenomenon_time_start, result_type, result_number, result_quality_type,"
        " datastream_id, feature_of_interest_id) VALUES (%s, 2, %s, 0, %s, %s)"
    )
    shift = 10**15  # after everything the API wrote, so that the rows can be told apart and removed
    with psycopg.connect(db, autocommit=True) as pg:
        foi = pg.execute("SELECT min(id) FROM features_of_interest").fetchone()
        assert foi is not None
        t = time.perf_counter()
        for start, result in rows:
            pg.execute(insert, (start + shift, result, datastream, foi[0]))  # autocommit: a transaction each
        per_row = len(rows) / (time.perf_counter() - t)
        t = time.perf_counter()
        with (
            pg.transaction(),
            pg.cursor() as cur,
            cur.copy(
                "COPY observations (phenomenon_time_start, result_type, result_number, result_quality_type,"
                " datastream_id, feature_of_interest_id) FROM STDIN"
            ) as copy,
        ):
            for start, result in rows:
                copy.write_row((start + 2 * shift, 2, result, 0, datastream, foi[0]))
        bulk = len(rows) / (time.perf_counter() - t)
        pg.execute("DELETE FROM observations WHERE datastream_id = %s", (datastream,))
        pg.execute("DELETE FROM datastreams WHERE id = %s", (datastream,))
    return per_row, bulk


def run_server(
    db: Path | str, bodies: list[bytes], connections: int, synchronous: str
) -> tuple[float, list[float], float, int]:
    """Serve ``db`` and POST ``bodies`` (after 200 for warm-up); check that every acknowledged one is stored.

    Also returns the rate of the cheapest request there is (``GET /health/live``) with the same
    client and connections: the ceiling of the HTTP stack and client on this machine, and the id
    of the Datastream."""
    with Server(db, "--synchronous", synchronous) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/v1.1/Datastreams", orjson.dumps(SETUP), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            raise SystemExit(f"setup failed: {resp.status}")
        location = resp.getheader("Location", "")
        datastream = int(location.rsplit("(", 1)[1].rstrip(")"))
        path = "/v1.1" + location.split("/v1.1", 1)[1] + "/Observations"
        # Warm up: the first requests pay for imports and caches.
        run(post_all(server.port, path, bodies[:200], 8))
        elapsed, latencies = run(post_all(server.port, path, bodies[200:], connections))
        conn = http.client.HTTPConnection("127.0.0.1", server.port)  # the first one has idled out
        conn.request("GET", path + "?$count=true&$top=0")
        count = orjson.loads(conn.getresponse().read())["@iot.count"]
        if count != len(bodies):
            raise SystemExit(f"{len(bodies)} Observations acknowledged but {count} stored")
        probes = [b""] * len(bodies[200:])
        ceiling, _ = run(post_all(server.port, "/health/live", probes, connections, "GET", b" 200 "))
    return elapsed, latencies, len(probes) / ceiling, datastream


def run(coro: Any) -> Any:
    """Run the client on uvloop when it is there (it is, with uvicorn[standard]): a lighter client
    leaves more of the machine's two cores to the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="Observations to POST (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default: %(default)s)")
    parser.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default=Settings.synchronous, help="(default: %(default)s)"
    )
    parser.add_argument("--db", help="an existing PostgreSQL database to benchmark instead of a new SQLite file")
    args = parser.parse_args()

    bodies = [orjson.dumps(observation(i)) for i in range(args.requests)]
    rows = [(START + i * 1_000_000, float(observation(i)["result"])) for i in range(args.requests)]  # type: ignore[arg-type]
    if args.db:
        elapsed, latencies, ceiling, datastream = run_server(args.db, bodies, args.connections, args.synchronous)
        per_row, bulk = raw_rates_postgres(args.db, datastream, rows)
        raw, store = ("psycopg", "one COPY"), f"PostgreSQL {redact(args.db)}"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, latencies, ceiling, _ = run_server(
                Path(tmp) / "city.db", bodies, args.connections, args.synchronous
            )
        per_row, bulk = raw_rates(rows, args.synchronous)
        raw, store = ("sqlite3", "one executemany"), f"SQLite synchronous={args.synchronous}"
    api = (len(bodies) - 200) / elapsed
    print(
        f"\nsingle-Observation POST, {args.connections} keep-alive connections, {store}\n\n"
        f"  POST /Datastreams(id)/Observations        {api:>9,.0f} obs/s   "
        f"latency p50 {pct(latencies, 0.5):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms   (goal ≥ 5,000 obs/s)\n"
        f"  GET /health/live (HTTP stack ceiling)     {ceiling:>9,.0f} req/s   API / this: {api / ceiling:.0%}\n"
        f"  raw {raw[0]}, one transaction per row  {per_row:>11,.0f} rows/s  API / this: {api / per_row:.2f}\n"
        f"  raw {raw[0]}, {raw[1]:<20}      {bulk:>9,.0f} rows/s  API / this: {api / bulk:.1%}"
    )


if __name__ == "__main__":
    main()
