"""The cost of access control on reads: the same queries with it off, and on for two kinds of caller.

    python -m benchmarks.access                       # 2 M Observations, 1,000 Datastreams, SQLite
    python -m benchmarks.access --observations 10000000 --keep /tmp/access.db
    python -m benchmarks.access --db postgresql://stadsdata@127.0.0.1:25432/access    # PostgreSQL (must exist)

Builds (or reuses) a synthetic city through the store's bulk path (``benchmarks.queries.build``),
then spreads its Datastreams over 100 Things in 5 projects: 70 % public, 20 % internal, 10 %
personal, each personal one owned by its own resident. Serves it three ways at once (access
control off; on) and measures, in one run so that the ratios compare like with like:

- the newest 100 Observations of a public Datastream (p50 / p99),
- the latest value of every Datastream the caller may see, in one request
  (``Datastreams?$expand=Observations($orderby=phenomenonTime desc;$top=1)``),

with access off, on for an anonymous caller, and on for a reader of one project; and prints each
figure with its ratio to access off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

from benchmarks.queries import build, observations_in, pct
from benchmarks.server import Server
from stadsdata.access.identity import Role
from stadsdata.access.tokens import issue
from stadsdata.model.entities import sensing_registry
from stadsdata.store import is_postgres, open_store

PROJECTS = ("groundwater", "traffic", "air", "parking", "footfall")
THINGS = 100


def mark(db: str, seed: int = 7) -> list[int]:
    """Spread the Datastreams over Things with projects and visibilities; the ids of the public Datastreams."""
    rng = random.Random(seed)
    pg = is_postgres(db)
    conn = psycopg.connect(db) if pg else sqlite3.connect(db)
    q = (lambda s: s.replace("?", "%s")) if pg else (lambda s: s)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM things")
        if int(cur.fetchone()[0]) > 1:  # marked before
            cur.execute(q("SELECT id, properties FROM datastreams ORDER BY id"))
            return [i for i, p in cur.fetchall() if json.loads(p or "{}").get("visibility") == "public"]
        things = []
        for t in range(THINGS):
            project = PROJECTS[t % len(PROJECTS)]
            props = json.dumps({"project": project, "visibility": "public"})
            cur.execute(
                q("INSERT INTO things (name, description, properties) VALUES (?, ?, ?) RETURNING id"),
                (f"thing {t}", "synthetic", props),
            )
            things.append(int(cur.fetchone()[0]))
        cur.execute("SELECT id FROM datastreams ORDER BY id")
        public = []
        for (ds,) in cur.fetchall():
            roll = rng.random()
            visibility = "public" if roll < 0.7 else "internal" if roll < 0.9 else "personal"
            props = {"visibility": visibility} | ({"owner": f"resident-{ds}"} if visibility == "personal" else {})
            cur.execute(
                q("UPDATE datastreams SET thing_id = ?, properties = ? WHERE id = ?"),
                (rng.choice(things), json.dumps(props), ds),
            )
            if visibility == "public":
                public.append(ds)
        conn.commit()
        return public
    finally:
        conn.close()


def reader_token(db: str) -> str:
    store = open_store(db, sensing_registry())

    return str(store.write_sync(lambda tx: issue(tx, "bench-reader", [(PROJECTS[0], Role.READER, False)], "benchmark")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=2_000_000)
    parser.add_argument("--datastreams", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="SQLite database file to build once and reuse")
    parser.add_argument("--db", help="a PostgreSQL URL to build (when empty) and benchmark instead of SQLite")
    parser.add_argument("--requests", type=int, default=400, help="page queries per caller (default: 400)")
    args = parser.parse_args()
    tmp = None
    if args.db:
        db = args.db
    elif args.keep:
        db = str(args.keep)
    else:
        tmp = tempfile.TemporaryDirectory()
        db = str(Path(tmp.name) / "access.db")
    if observations_in(db) == 0:
        build(db, args.observations, args.datastreams)
    public = mark(db)
    token = reader_token(db)
    print(f"{observations_in(db):,} Observations, {args.datastreams} Datastreams ({len(public)} public), "
          f"{'PostgreSQL' if is_postgres(db) else 'SQLite'}", file=sys.stderr)  # fmt: skip
    rng = random.Random(3)
    page = [f"/v1.1/Datastreams({rng.choice(public)})/Observations?$orderby=phenomenonTime%20desc&$top=100"
            for _ in range(args.requests)]  # fmt: skip
    newest = quote("Observations($orderby=phenomenonTime desc;$top=1;$select=result,phenomenonTime)")
    latest = f"/v1.1/Datastreams?$top=1000&$select=id&$expand={newest}"
    results: dict[str, tuple[float, float, float, int]] = {}
    with Server(db, "--log-level", "WARNING") as off, Server(db, "--log-level", "WARNING", "--access", "on") as on:
        callers = [("access off", off, None), ("on, anonymous", on, None), ("on, project reader", on, token)]
        conns = {name: http.client.HTTPConnection("127.0.0.1", server.port) for name, server, _ in callers}
        headers = {name: {"Authorization": f"Bearer {tok}"} if tok else {} for name, _, tok in callers}
        times: dict[str, list[float]] = {name: [] for name in conns}
        latest_times: dict[str, list[float]] = {name: [] for name in conns}
        for name in conns:  # warm up
            for url in [*page[:50], latest]:
                request(conns[name], url, headers[name])
        # Interleaved, so that the machine's noise falls on every caller alike.
        for url in page:
            for name in conns:
                times[name].append(request(conns[name], url, headers[name]))
        for _ in range(10):
            for name in conns:
                latest_times[name].append(request(conns[name], latest, headers[name]))
        for name, conn in conns.items():
            conn.request("GET", latest, headers=headers[name])
            shown = len(json.loads(conn.getresponse().read())["value"])
            t = times[name]
            results[name] = (pct(t, 0.5), pct(t, 0.99), pct(latest_times[name], 0.5), shown)
            conn.close()
    base = results["access off"]
    # The latest values cover the Datastreams the caller sees: compared per Datastream.
    print(f"{'':22}{'page p50 ms':>13}{'ratio':>7}{'page p99 ms':>13}{'latest p50 ms':>15}{'streams':>9}"
          f"{'ms/stream':>11}{'ratio':>7}")  # fmt: skip
    for name, (p50, p99, lat, shown) in results.items():
        per, base_per = lat / shown, base[2] / base[3]
        ratio = per / base_per
        print(f"{name:22}{p50:13.2f}{p50 / base[0]:7.2f}{p99:13.2f}{lat:15.1f}{shown:9}{per:11.3f}{ratio:7.2f}")
    if tmp is not None:
        tmp.cleanup()


def request(conn: http.client.HTTPConnection, url: str, headers: dict[str, str]) -> float:
    """One GET; its time in ms."""
    t = time.perf_counter()
    conn.request("GET", url, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{url}: {resp.status} {body[:300]!r}")
    return (time.perf_counter() - t) * 1000


if __name__ == "__main__":
    main()
