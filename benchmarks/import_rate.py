"""File import rate: rows per second of ``stadsdata import`` for a large CSV into a fresh database.

    python -m benchmarks.import_rate                          # 1,000,000 rows into SQLite (synchronous FULL)
    python -m benchmarks.import_rate --rows 200000 --synchronous NORMAL
    python -m benchmarks.import_rate --db postgresql://stadsdata@127.0.0.1:25432/bench

Writes a KNMI-style CSV (an ISO 8601 time and one value per row, with a decimal comma and
semicolons, as Dutch spreadsheets export it) and a database with one Datastream, then runs the
import exactly as the command does: chunks of 10,000 rows, each one ``Service.ingest`` message and
one transaction. Prints rows/s, including parsing the file; a second run over the same file
shows how fast committed chunks are skipped when an import is resumed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from stadsdata.ingest.files import FileMapping, ValueColumn, import_file
from stadsdata.model.entities import sensing_registry
from stadsdata.query.path import parse_path
from stadsdata.service import Service
from stadsdata.store import open_store
from tests import fixtures


def write_csv(path: Path, rows: int) -> None:
    """``rows`` ten-minute values from 2020-01-01 on, such as ``2020-01-01T00:10:00;0,1``."""
    start = dt.datetime(2020, 1, 1)
    step = dt.timedelta(minutes=10)
    with open(path, "w", encoding="utf-8") as f:
        f.write("tijd;waarde\n")
        t = start
        for i in range(rows):
            f.write(f"{t.isoformat()};{i % 997 // 10},{i % 10}\n")
            t += step


async def run(db: str, path: Path, synchronous: str, progress: bool) -> None:
    store = open_store(db, sensing_registry(), synchronous=synchronous)
    service = Service(store.registry, store)
    try:
        await service.create(parse_path(store.registry, "Things"), fixtures.full_thing())
        mapping = FileMapping(time="tijd", decimal=",", values=(ValueColumn("waarde", 1),))
        for label in ("import", "rerun (every chunk skipped)"):
            started = time.perf_counter()
            summary = await import_file(service, path, mapping, progress=progress)
            seconds = time.perf_counter() - started
            print(f"{label}: {summary.rows:,} rows in {seconds:.1f} s = {summary.rows / seconds:,.0f} rows/s")
            print(f"  {summary.line()}")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--db", help="a PostgreSQL URL of an empty database (default: a new SQLite file)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.csv"
        started = time.perf_counter()
        write_csv(path, args.rows)
        size = path.stat().st_size
        print(f"wrote {args.rows:,} rows ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
        db = args.db or str(Path(tmp) / "bench.db")
        asyncio.run(run(db, path, args.synchronous, args.progress))


if __name__ == "__main__":
    main()
