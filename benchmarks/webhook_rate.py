"""Sustained LoRaWAN ingest through The Things Stack webhook, and how soon an uplink can be queried.

    python -m benchmarks.webhook_rate                         # 20 s of uplinks over 16 keep-alive connections
    python -m benchmarks.webhook_rate --seconds 60 --connections 32 --synchronous NORMAL

Starts `stadsdata serve` on a fresh SQLite database with one Datastream, an ingest mapping for
one device and a webhook secret. Then, for ``--seconds``, ``--connections`` clients each POST
uplinks to /ingest/ttn back to back, each body a real uplink of an Ezurio RS26x
(tests/fixtures/lorawan) with its own frame counter and reception time, as The Things Stack
would send them. Each is answered 200 only after its commit. Meanwhile a probe posts one more
uplink every 100 ms and queries the Datastream's Observations for it until it is there: the
end-to-end latency, POST sent → visible in a query. At the end the stored count must equal the
acknowledged uplinks. Prints the sustained rate and the latencies (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from benchmarks.post_rate import SETUP, pct, run
from benchmarks.server import Server
from stadsdata.settings import Settings

SAMPLE = Path(__file__).parent.parent / "tests" / "fixtures" / "lorawan" / "tts_ezurio_rs26x_uplink.json"
SECRET = "benchmark-secret"
MAPPING = """
[[device]]
dev_eui = "0025CA00000017C2"
[device.fields]
Temperature = 1
"""
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def uplink(template: dict[str, Any], i: int) -> tuple[bytes, str]:
    """Uplink ``i``: its own frame counter, reception time (i ms after START) and temperature; the body and the
    phenomenonTime it is stored with."""
    when = START + dt.timedelta(milliseconds=i)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as The Things Stack writes them
    up = template["uplink_message"]
    doc = {
        **template,
        "received_at": text,
        "uplink_message": {
            **up,
            "f_cnt": i,
            "received_at": text,
            "decoded_payload": {**up["decoded_payload"], "Temperature": round(15 + (i % 800) / 100, 2)},
        },
    }
    return orjson.dumps(doc), when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(
    port: int, seconds: float, connections: int, template: dict[str, Any], counter: Iterator[int]
) -> dict[str, Any]:
    """Uplinks from ``connections`` clients for ``seconds``, with the end-to-end probe; what was measured.
    ``counter`` numbers the uplinks (frame counter, reception time) across runs."""
    posted: list[float] = []
    end_to_end: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        conn = await Connection.open(port)
        try:
            while time.perf_counter() < stop:
                body, _ = uplink(template, next(counter))
                t = time.perf_counter()
                status, data = await conn.request("POST", "/ingest/ttn", body)
                if status != 200 or b'"stored":1' not in data:
                    raise SystemExit(f"uplink not stored: {status} {data[:300]!r}")
                posted.append((time.perf_counter() - t) * 1000)
        finally:
            conn.close()

    async def probe() -> None:
        post, query = await Connection.open(port), await Connection.open(port)
        try:
            while time.perf_counter() < stop:
                body, when = uplink(template, next(counter))
                path = f"/v1.1/Datastreams(1)/Observations?$select=id&$filter={quote(f'phenomenonTime eq {when}')}"
                t = time.perf_counter()
                status, data = await post.request("POST", "/ingest/ttn", body)
                if status != 200:
                    raise SystemExit(f"probe uplink failed: {status} {data[:300]!r}")
                while True:
                    status, data = await query.request("GET", path)
                    if status != 200:
                        raise SystemExit(f"query failed: {status} {data[:300]!r}")
                    if orjson.loads(data)["value"]:
                        break
                end_to_end.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.1)
        finally:
            post.close()
            query.close()

    t = time.perf_counter()
    await asyncio.gather(probe(), *(client() for _ in range(connections)))
    return {
        "elapsed": time.perf_counter() - t,
        "posted": posted,
        "end_to_end": end_to_end,
        "total": len(posted) + len(end_to_end),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the sustained load (default: %(default)s)"
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients (default: %(default)s)")
    parser.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default=Settings.synchronous, help="(default: %(default)s)"
    )
    args = parser.parse_args()
    if not 1 <= args.seconds <= 90:
        parser.error("--seconds must be 1 to 90 (the whole run stays under two minutes)")
    template = orjson.loads(SAMPLE.read_bytes())
    os.environ["STADSDATA_WEBHOOK_SECRET"] = SECRET
    with tempfile.TemporaryDirectory() as tmp:
        mapping = Path(tmp) / "ingest.toml"
        mapping.write_text(MAPPING, encoding="utf-8")
        db = Path(tmp) / "city.db"
        with Server(db, "--synchronous", args.synchronous, "--ingest-mapping", str(mapping)) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            conn.request("POST", "/v1.1/Datastreams", orjson.dumps(SETUP), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 201 or not resp.getheader("Location", "").endswith("/Datastreams(1)"):
                raise SystemExit(f"setup failed: {resp.status} {resp.getheader('Location')}")
            print(f"warming up, then {args.seconds:.0f} s of uplinks …", file=sys.stderr)
            counter = itertools.count()
            warm = run(load(server.port, 2, 4, template, counter))  # imports, caches, the first pages of the database
            result = run(load(server.port, args.seconds, args.connections, template, counter))
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            conn.request("GET", "/v1.1/Datastreams(1)/Observations?$count=true&$top=0")
            count = orjson.loads(conn.getresponse().read())["@iot.count"]
    if count != warm["total"] + result["total"]:
        raise SystemExit(f"{warm['total'] + result['total']} uplinks acknowledged but {count} Observations stored")
    rate = len(result["posted"]) / result["elapsed"]
    posted, e2e = result["posted"], result["end_to_end"]
    print(
        f"\nThe Things Stack webhook (POST /ingest/ttn), {args.connections} keep-alive connections, "
        f"synchronous={args.synchronous}, {result['elapsed']:.0f} s\n\n"
        f"  sustained ingest                 {rate:>8,.0f} uplinks/s ({len(posted):,} uplinks, each one Observation)\n"
        f"  POST → 200 (committed)           p50 {pct(posted, 0.5):6.1f} ms   p99 {pct(posted, 0.99):6.1f} ms\n"
        f"  POST → visible in a query        p50 {pct(e2e, 0.5):6.1f} ms   p99 {pct(e2e, 0.99):6.1f} ms"
        f"   ({len(e2e)} probes under the same load)\n"
        f"  stored = acknowledged            {count:,} Observations"
    )


if __name__ == "__main__":
    main()
