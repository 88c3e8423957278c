"""Read and bulk-write benchmarks on a large store, through the HTTP API with a keep-alive client.

    python -m benchmarks.queries                      # 10 M observations, 1,000 datastreams, SQLite
    python -m benchmarks.queries --observations 1000000 --keep /tmp/city.db
    python -m benchmarks.queries --db postgresql://stadsdata@127.0.0.1:25432/city   # PostgreSQL

Builds (or reuses, with --keep) a database of a synthetic city through the
store's bulk path, starts `stadsdata serve` on it, and prints:

- the newest 100 Observations of a datastream: p50 / p99 latency, first for one read of each
  datastream after the start, then in the steady state (random datastreams),
- the latest value of 1,000 datastreams in one request ($expand with $top=1),
- $count of all Observations,
- hourly means (Europe/Amsterdam) of one datastream over a year with $apply, for a sensor
  reporting every 10 minutes (the synthetic city's typical rate) and one reporting every minute;
  both year-long datastreams are added through the bulk path when the database lacks them,
- CreateObservations rate against a raw bulk insert of the same rows into the same database
  (SQLite: executemany; PostgreSQL: COPY).

A PostgreSQL database (--db URL, which must exist) is built when it holds no Observations yet
and kept; the rows the bulk benchmark adds are removed again.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import orjson
import psycopg
from tqdm import tqdm

from benchmarks.rawdb import OBSERVATION_INSERT
from benchmarks.server import Server
from stadsdata.model.entities import DATASTREAM, OBSERVATION, sensing_registry
from stadsdata.model.values import GeoValue, format_instant, geometry_bounds
from stadsdata.store import is_postgres, open_store
from stadsdata.store.base import Tx

START = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds
CLIENTS = 2


def build(db: str, observations: int, datastreams: int) -> None:
    """A city with ``datastreams`` sensors, each observed every 1–15 minutes, on the bulk path."""
    registry = sensing_registry()
    store = open_store(db, registry, synchronous="OFF")

    def setup(tx: Tx) -> tuple[int, list[int]]:
        types = registry.types
        thing = tx.insert(types["Thing"], {"name": "city", "description": "synthetic"}, {})
        sensor = tx.insert(
            types["Sensor"], {"name": "s", "description": "d", "encodingType": "text/plain", "metadata": "m"}, {}
        )
        prop = tx.insert(
            types["ObservedProperty"],
            {"name": "level", "definition": "http://example.org/level", "description": "d"},
            {},
        )
        point = {"type": "Point", "coordinates": [6.89, 52.22]}
        foi = tx.insert(
            types["FeatureOfInterest"],
            {
                "name": "centre",
                "description": "d",
                "encodingType": "application/geo+json",
                "feature": GeoValue(point, geometry_bounds(point, "feature")),
            },
            {},
        )
        ds_ids = [
            tx.insert(
                DATASTREAM,
                {
                    "name": f"sensor {i}",
                    "description": "d",
                    "unitOfMeasurement": {"name": "m", "symbol": "m", "definition": "x"},
                    "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                },
                {"thing_id": thing, "sensor_id": sensor, "observed_property_id": prop},
            )
            for i in range(datastreams)
        ]
        return foi, ds_ids

    foi, ds_ids = store.write_sync(setup)
    rng = random.Random(42)
    per_ds = observations // datastreams
    steps = [rng.randint(1, 15) * 60_000_000 for _ in ds_ids]
    chunk = 50_000
    with tqdm(total=per_ds * len(ds_ids), unit="obs", desc="building", file=sys.stderr) as bar:
        # Time-major order, as a city's sensors report: every datastream advances together.
        rows: list[tuple[object, ...]] = []
        for k in range(per_ds):
            for ds, step in zip(ds_ids, steps, strict=True):
                rows.append(((START + k * step, None), round(rng.gauss(10, 3), 2), ds, foi))
            if len(rows) >= chunk or k == per_ds - 1:
                batch = rows
                store.write_sync(
                    lambda tx, batch=batch: tx.insert_many(
                        OBSERVATION, ("phenomenonTime", "result"), ("datastream_id", "feature_of_interest_id"), batch
                    )
                )
                bar.update(len(batch))
                rows = []
    _analyze(db)


YEAR_START = 1_735_686_000_000_000  # 2025-01-01T00:00:00+01:00 (local midnight in Enschede)
YEAR_END = 1_767_222_000_000_000  # 2026-01-01T00:00:00+01:00


def year_series(db: str, minutes: int) -> int:
    """The id of a Datastream observed every ``minutes`` through 2025, added on the bulk path if missing."""
    name = f"year every {minutes} min"
    found = _sql(db, "SELECT id FROM datastreams WHERE name = {}", name)
    if found:
        return int(found[0])
    registry = sensing_registry()
    store = open_store(db, registry, synchronous="OFF")
    thing, sensor, prop, foi = (int(_sql(db, f"SELECT min(id) FROM {t}")[0]) for t in _PARENTS)

    def create(tx: Tx) -> int:
        return tx.insert(
            DATASTREAM,
            {
                "name": name,
                "description": f"one value every {minutes} minutes through 2025",
                "unitOfMeasurement": {"name": "m", "symbol": "m", "definition": "x"},
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            },
            {"thing_id": thing, "sensor_id": sensor, "observed_property_id": prop},
        )

    ds = store.write_sync(create)
    rng = random.Random(minutes)
    times = range(YEAR_START, YEAR_END, minutes * 60_000_000)
    with tqdm(total=len(times), unit="obs", desc=name, file=sys.stderr) as bar:
        for i in range(0, len(times), 50_000):
            batch = [((t, None), round(rng.gauss(10, 3), 2), ds, foi) for t in times[i : i + 50_000]]
            store.write_sync(
                lambda tx, batch=batch: tx.insert_many(
                    OBSERVATION, ("phenomenonTime", "result"), ("datastream_id", "feature_of_interest_id"), batch
                )
            )
            bar.update(len(batch))
    _analyze(db)
    return ds


_PARENTS = ("things", "sensors", "observed_properties", "features_of_interest")


def _sql(db: str, query: str, *args: object) -> tuple[object, ...] | None:
    """One row of ``query`` ({} marks a parameter) on either database."""
    if is_postgres(db):
        with psycopg.connect(db) as pg:
            return pg.execute(query.replace("{}", "%s"), args).fetchone()
    with sqlite3.connect(db) as conn:
        row = conn.execute(query.replace("{}", "?"), args).fetchone()
        return tuple(row) if row else None


def _analyze(db: str) -> None:
    """Fresh planner statistics after a bulk load."""
    if is_postgres(db):
        with psycopg.connect(db, autocommit=True) as pg:
            pg.execute("VACUUM ANALYZE observations")
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("ANALYZE")


def observations_in(db: str) -> int:
    """How many Observations ``db`` holds (0 when it has no schema yet)."""
    if is_postgres(db):
        with psycopg.connect(db) as pg:
            exists = pg.execute("SELECT to_regclass('observations') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return 0
            row = pg.execute("SELECT count(*) FROM observations").fetchone()
            return int(row[0]) if row else 0
    if not Path(db).exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])


def size_of(db: str) -> float:
    """The database's size in MB."""
    if is_postgres(db):
        with psycopg.connect(db) as pg:
            row = pg.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) / 1e6 if row else 0.0
    return os.path.getsize(db) / 1e6


def timed(conn: http.client.HTTPConnection, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        out.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            raise SystemExit(f"{url}: {resp.status} {body[:300]!r}")
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=10_000_000)
    parser.add_argument("--datastreams", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="SQLite database file to build once and reuse")
    parser.add_argument("--db", help="a PostgreSQL URL to build (when empty) and benchmark instead of SQLite")
    parser.add_argument("--requests", type=int, default=2000, help="timed reads of the newest 100 (default: 2000)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(args.keep or Path(tmp.name) / "city.db")
    if not observations_in(db):
        t = time.perf_counter()
        build(db, args.observations, args.datastreams)
        print(f"built {args.observations:,} observations in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    year_ids = [(minutes, year_series(db, minutes)) for minutes in (10, 1)]
    size_mb = size_of(db)
    n_obs = observations_in(db)
    rows = []
    with Server(db) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        n_ds = int(orjson.loads(_get(conn, "/v1.1/Datastreams?$count=true&$top=0"))["@iot.count"])
        rng = random.Random(1)

        def newest(ds: int) -> str:
            return f"/v1.1/Datastreams({ds})/Observations?$top=100&$orderby=" + quote("phenomenonTime desc")

        # First read of each Datastream since the server started (its pages not yet in the
        # process's caches), then the steady state of a running server: random Datastreams.
        first = [t for ds in rng.sample(range(1, n_ds + 1), n_ds) for t in timed(conn, newest(ds), 1)]
        rows.append(
            (
                "newest 100, first read of each ds",
                f"p50 {pct(first, 0.5):.2f} ms  p99 {pct(first, 0.99):.2f} ms",
                "",
            )
        )
        lat = [t for _ in range(args.requests) for t in timed(conn, newest(rng.randint(1, n_ds)), 1)]
        rows.append(
            ("newest 100 of a datastream", f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms", "p50 ≤ 2 ms")
        )
        latest = "/v1.1/Datastreams?$top=1000&$select=id,name&$expand=" + quote(
            "Observations($top=1;$orderby=phenomenonTime desc;$select=result,phenomenonTime)"
        )
        lv = timed(conn, latest, 20)
        rows.append((f"latest value of {min(n_ds, 1000)} datastreams", f"p50 {pct(lv, 0.5):.1f} ms", "≤ 50 ms"))
        cnt = timed(conn, "/v1.1/Observations?$count=true&$top=0", 5)
        rows.append(("$count of all observations", f"p50 {pct(cnt, 0.5):.1f} ms", "(≤ 100 ms on PostgreSQL)"))
        hourly = quote(
            f"filter(phenomenonTime ge {format_instant(YEAR_START)} and phenomenonTime lt {format_instant(YEAR_END)})"
            "/groupby((bucket(phenomenonTime,duration'PT1H','Europe/Amsterdam') as hour),"
            "aggregate(result with average as mean))"
        )
        for minutes, ds in year_ids:
            url = f"/v1.1/Datastreams({ds})/Observations?$top=10000&$apply={hourly}"
            groups = len(orjson.loads(_get(conn, url))["value"])
            hm = timed(conn, url, 10)
            rows.append(
                (
                    f"hourly means over a year, every {minutes} min",
                    f"p50 {pct(hm, 0.5):.1f} ms ({groups:,} hours)",
                    "≤ 100 ms" if minutes == 10 else "",
                )
            )
        api_rate, raw_rate = bulk_rates(server, db, rng)
        rows.append(("CreateObservations", f"{api_rate:,.0f} obs/s", ""))
        raw_name = "raw COPY, same rows" if is_postgres(db) else "raw SQLite executemany, same rows"
        rows.append((raw_name, f"{raw_rate:,.0f} obs/s", ""))
        rows.append(("CreateObservations / raw bulk", f"{api_rate / raw_rate:.0%}", "≥ 50 %"))
    print(f"\nstadsdata read benchmarks: {n_obs:,} observations, {n_ds} datastreams, {size_mb:,.0f} MB\n")
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"  {name:<{width}}  {value:<28} {goal}")


def _get(conn: http.client.HTTPConnection, url: str) -> bytes:
    conn.request("GET", url)
    return conn.getresponse().read()


def bulk_rates(server: Server, db: str, rng: random.Random) -> tuple[float, float]:
    """CreateObservations of 200,000 rows in requests of 10,000, against a raw bulk insert of the same rows.

    In four rounds of 50,000 rows, each side once per round and first in every other round, so that the machine's
    changing load and the database's state (WAL file growth, checkpoints, cached pages) fall on both alike.
    """
    total, per_request, rounds = 200_000, 10_000, 4
    base = START + 10**15
    bodies = []
    for r in range(total // per_request):
        array = [
            [format_instant(base + (r * per_request + i) * 1_000_000), round(rng.gauss(10, 3), 2), 1]
            for i in range(per_request)
        ]
        bodies.append(
            orjson.dumps(
                [
                    {
                        "Datastream": {"@iot.id": 1},
                        "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
                        "dataArray": array,
                    }
                ]
            )
        )
    # The baseline writes the same rows into the same database (same table size and index depth); both sets are
    # removed afterwards, so that a kept database stays as it was built.
    raw_base = base + total * 1_000_000
    rows = [(raw_base + i * 1_000_000, rng.gauss(10, 3)) for i in range(total)]

    # Two clients, as a loader with a little concurrency would: parsing one request overlaps
    # with the database work of the other.
    def post_all(part: list[bytes]) -> None:
        client = http.client.HTTPConnection("127.0.0.1", server.port)
        for body in part:
            client.request("POST", "/v1.1/CreateObservations", body, {"Content-Type": "application/json"})
            resp = client.getresponse()
            data = resp.read()
            if resp.status != 201 or b"error" in data:
                raise SystemExit(f"CreateObservations failed: {data[:300]!r}")

    def api_round(part: list[bytes]) -> float:
        t = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(post_all, [part[i::CLIENTS] for i in range(CLIENTS)]))
        return time.perf_counter() - t

    raw = _RawBulk(db, per_request)
    api_s = raw_s = 0.0
    per_round = len(bodies) // rounds
    try:
        for k in range(rounds):
            part = bodies[k * per_round : (k + 1) * per_round]
            chunk = rows[k * per_round * per_request : (k + 1) * per_round * per_request]
            if k % 2:
                raw_s += raw.insert(chunk)
                api_s += api_round(part)
            else:
                api_s += api_round(part)
                raw_s += raw.insert(chunk)
    finally:
        raw.remove(base)
    return total / api_s, total / raw_s


class _RawBulk:
    """The baseline: rows (start µs, result) of Datastream 1 at FeatureOfInterest 1, written directly in one
    transaction per request's worth: SQLite ``executemany`` on a connection opened as the server opens it (WAL,
    synchronous FULL, foreign keys checked), PostgreSQL ``COPY``."""

    def __init__(self, db: str, per_request: int) -> None:
        self.per_request = per_request
        self.pg = psycopg.connect(db, autocommit=True) if is_postgres(db) else None
        if self.pg is None:
            self.lite = sqlite3.connect(db, isolation_level=None)
            self.lite.execute("PRAGMA journal_mode=WAL")
            self.lite.execute("PRAGMA synchronous=FULL")
            self.lite.execute("PRAGMA foreign_keys=ON")

    def insert(self, rows: list[tuple[int, float]]) -> float:
        t = time.perf_counter()
        for start in range(0, len(rows), self.per_request):
            part = rows[start : start + self.per_request]
            if self.pg is None:
                self.lite.execute("BEGIN")
                self.lite.executemany(OBSERVATION_INSERT, part)
                self.lite.execute("COMMIT")
                continue
            with (
                self.pg.transaction(),
                self.pg.cursor() as cur,
                cur.copy(
                    "COPY observations (phenomenon_time_start, result_type, result_number, result_quality_type,"
                    " datastream_id, feature_of_interest_id) FROM STDIN"
                ) as copy,
            ):
                for start_us, result in part:
                    copy.write_row((start_us, 2, result, 0, 1, 1))
        return time.perf_counter() - t

    def remove(self, base: int) -> None:
        """Both sides' rows, behind the server's back: Datastream 1's Observation count and their hours too."""
        hour = base - base % 3_600_000_000
        if self.pg is None:
            self.lite.execute("DELETE FROM observations WHERE phenomenon_time_start >= ?", (base,))
            self.lite.execute(RECOUNT)
            self.lite.execute(FORGET_HOURS.format("?"), (hour,))
            self.lite.close()
            return
        self.pg.execute("DELETE FROM observations WHERE phenomenon_time_start >= %s", (base,))
        self.pg.execute(RECOUNT)
        self.pg.execute(FORGET_HOURS.format("%s"), (hour,))
        self.pg.close()


RECOUNT = (
    "UPDATE observation_counts SET count = (SELECT count(*) FROM observations WHERE datastream_id = 1)"
    " WHERE datastream_id = 1"
)
FORGET_HOURS = "DELETE FROM observation_hours WHERE datastream_id = 1 AND hour >= {}"
"""The rows of both bulk writes are removed behind the server's back: Datastream 1's Observation count and the
summaries of their hours too."""


if __name__ == "__main__":
    main()
