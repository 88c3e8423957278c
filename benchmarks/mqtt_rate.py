"""Observations created over MQTT: sustained rate at QoS 1, and the latency from publish to an HTTP read.

    python -m benchmarks.mqtt_rate                          # 5,000 messages, embedded broker and mosquitto
    python -m benchmarks.mqtt_rate --messages 20000 --inflight 200 --broker embedded

For each broker (the embedded one; mosquitto too when it is installed, started here on a free
port) it starts `stadsdata serve` on a fresh SQLite database with one Datastream, then one device
(aiomqtt, QoS 1, up to ``--inflight`` messages unacknowledged) publishes ``--messages``
Observations to ``v1.1/Datastreams(1)/Observations`` as fast as the acknowledgements allow, while
an HTTP client reads the newest Observations every few milliseconds. Printed: the rate (messages
until the last one is visible over HTTP, per second) and the latency of each message from its
publish until an HTTP read first returned it, p50 and p99. On the embedded broker a PUBACK means
committed; on mosquitto it means mosquitto has it, and the server commits after that. Bounded:
each broker run stops after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import httpx
import orjson

from benchmarks.post_rate import SETUP
from benchmarks.server import Server, free_port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    http_port: int, mqtt_port: int, messages: int, inflight: int, timeout: float
) -> tuple[float, list[float]]:
    """(messages per second until all are visible, latencies in ms)."""
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = asyncio.Event()

    async def poll(http: httpx.AsyncClient) -> None:
        last = 0  # the newest Observation read so far: each read asks only for what came after it
        while len(seen) < messages:
            r = await http.get(
                "/v1.1/Datastreams(1)/Observations",
                params={"$select": "id,result", "$orderby": "id", "$top": "10000", "$filter": f"id gt {last}"},
            )
            now = time.perf_counter()
            for o in r.json()["value"]:
                last = max(last, o["@iot.id"])
                seen.setdefault(o["result"], now)
            await asyncio.sleep(0.002)
        done.set()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        r = await http.post("/v1.1/Datastreams", json=SETUP)
        assert r.status_code == 201, r.text
        async with aiomqtt.Client(
            "127.0.0.1", mqtt_port, identifier="bench-device", max_inflight_messages=inflight
        ) as device:
            device.pending_calls_threshold = messages + 1
            poller = asyncio.create_task(poll(http))
            window = asyncio.Semaphore(inflight)
            start = time.perf_counter()

            async def publish(i: int) -> None:
                async with window:
                    sent[i] = time.perf_counter()
                    await device.publish("v1.1/Datastreams(1)/Observations", orjson.dumps({"result": i}), qos=1)

            await asyncio.wait_for(asyncio.gather(*(publish(i) for i in range(messages))), timeout)
            await asyncio.wait_for(done.wait(), timeout)
            elapsed = max(seen.values()) - start
            poller.cancel()
    return messages / elapsed, [(seen[i] - sent[i]) * 1000 for i in sent]


def mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--inflight", type=int, default=100, help="unacknowledged QoS 1 messages at most")
    parser.add_argument("--broker", choices=("embedded", "mosquitto", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=50.0, help="seconds per broker run at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        runs = []
        if args.broker in ("embedded", "both"):
            port = free_port()
            runs.append(("embedded (amqtt)", ["--mqtt-port", str(port)], port, None))
        if args.broker in ("mosquitto", "both"):
            found = mosquitto(directory)
            if found is None:
                print("mosquitto is not installed: skipped", file=sys.stderr)
            else:
                proc, port = found
                runs.append(("mosquitto", ["--mqtt-url", f"mqtt://127.0.0.1:{port}", "--mqtt-port", "0"], port, proc))
        print(f"{args.messages} Observations over MQTT QoS 1, {args.inflight} in flight, SQLite synchronous=FULL")
        for name, extra, port, proc in runs:
            try:
                with Server(directory / f"{name.split()[0]}.db", *extra, "--log-level", "WARNING") as server:
                    rate, latencies = asyncio.run(run(server.port, port, args.messages, args.inflight, args.timeout))
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
            print(
                f"  {name:<17} {rate:8.0f} Observations/s   publish → visible over HTTP: "
                f"p50 {percentile(latencies, 0.5):6.1f} ms  p99 {percentile(latencies, 0.99):6.1f} ms"
            )


if __name__ == "__main__":
    main()
