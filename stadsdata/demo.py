"""``stadsdata demo``: a living, simulated Enschede in one command.

It makes a directory (``./stadsdata-demo``) with a configuration, a database, a webhook secret and
an ingest mapping; starts ``stadsdata serve`` on it as a subprocess; creates the simulated city's
Things through the API (``stadsdata.sim``); fills in their history on the bulk path; prints the
dashboard's URL; and then feeds live readings through the public ingestion paths (the LoRaWAN
webhook and HTTP) until Ctrl-C. Nothing is written to the database except through the server's
API. Run it again on the same directory and it goes on where it stopped: what exists is looked up
by name, and only the missing history is added.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stadsdata.sim.feed import Live

HOUR = 3600
DAY = 86_400
DEFAULT_DIR = "stadsdata-demo"
DEFAULT_SEED = 53
STATE = "demo.json"
CONFIG = "stadsdata.toml"
MAPPING = "ingest-mapping.toml"
LOG = "server.log"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="serve a simulated, live Enschede with its dashboard",
        description="Start the server on a demo directory, create a simulated Enschede (groundwater wells in "
        "homes, passer-by counters, parking garages, air-quality lamp posts, traffic lights with cyclist "
        "detection), fill in its history, print the dashboard's URL and feed live readings through the "
        "LoRaWAN webhook and the HTTP API until Ctrl-C. Run it again to go on where it stopped. "
        "See docs/dashboard.md.",
    )
    demo.add_argument("--dir", default=DEFAULT_DIR, help=f"the demo's directory (default: ./{DEFAULT_DIR})")
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080, help="port to serve on (default: 8080)")
    demo.add_argument(
        "--seed",
        type=int,
        help=f"the simulation's seed: the same seed gives the same city, and with the same start time the same "
        f"readings (default: {DEFAULT_SEED}; a directory keeps the seed and start time of its first run)",
    )
    demo.add_argument("--days", type=float, default=7.0, help="days of history to fill in (default: 7)")
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="the live clock's pace: 1 is real time; 60 makes a minute pass every second, so readings then "
        "carry times ahead of now (default: 1)",
    )
    demo.add_argument(
        "--tile-url",
        metavar="URL",
        help="a map tile URL template for the dashboard, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png "
        "(default: none; the map shows the bundled neighbourhood outlines)",
    )
    demo.add_argument(
        "--live-for",
        type=float,
        metavar="SECONDS",
        help="stop after feeding live for this many seconds (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar while filling in history"
    )


class Demo:
    """The demo directory: its settings, state and server process."""

    def __init__(self, args: argparse.Namespace) -> None:
        if not args.speed > 0 or not args.days >= 0:
            raise DemoError("--speed must be above 0 and --days at least 0")
        self.dir = Path(args.dir).resolve()
        self.host = args.host
        self.port = args.port
        self.tile_url = args.tile_url
        self.server: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():  # a demo made inside a checkout holds a database and a secret: never commit it
            ignore.write_text("# written by stadsdata demo\n*\n")
        state_file = self.dir / STATE
        state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
        if state and args.seed is not None and args.seed != state["seed"]:
            raise DemoError(
                f"{self.dir} holds the demo of seed {state['seed']}; use another --dir for seed {args.seed}"
            )
        if not state:
            now = int(time.time())
            state = {"seed": DEFAULT_SEED if args.seed is None else args.seed, "anchor": now - now % HOUR}
            state_file.write_text(json.dumps(state, indent=2) + "\n")
        self.seed: int = state["seed"]
        self.anchor: int = state["anchor"]
        self.secret = self._secret()

    def _secret(self) -> str:
        """The webhook secret: kept in the configuration file from the first run."""
        config = self.dir / CONFIG
        if config.exists():
            import tomllib

            found = tomllib.loads(config.read_text()).get("webhook_secret")
            if isinstance(found, str) and found:
                return found
        return secrets.token_urlsafe(32)

    def write_config(self) -> Path:
        config = self.dir / CONFIG
        mapping = self.dir / MAPPING
        if not mapping.exists():
            mapping.write_text("# written by stadsdata demo once its Things exist\n")
        lines = {
            "db": str(self.dir / "stadsdata.db"),
            "host": self.host,
            "port": self.port,
            "log_level": "WARNING",
            "mqtt_port": 0,
            "ingest_mapping": str(mapping),
            "webhook_secret": self.secret,
        }
        text = "# stadsdata demo's server configuration (written by stadsdata demo)\n" + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in lines.items()
        )
        config.write_text(text)
        config.chmod(0o600)  # it holds the webhook secret
        return config

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Start ``stadsdata serve`` on the demo's configuration and wait until it is ready."""
        from stadsdata.sim.feed import Client, FeedError

        config = self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STADSDATA_")}  # the demo's file rules
        if self.tile_url:
            env["STADSDATA_TILE_URL"] = self.tile_url
        log = (self.dir / LOG).open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "stadsdata.cli", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        client = Client(self.url, timeout=5)
        deadline = time.monotonic() + 90
        while True:
            if self.server.poll() is not None:
                raise DemoError(f"the server stopped (exit status {self.server.returncode}):\n{self.log_tail()}")
            try:
                client.request("GET", "/health/ready")
                break
            except (OSError, FeedError):
                if time.monotonic() > deadline:
                    raise DemoError(f"the server did not get ready in 90 s:\n{self.log_tail()}") from None
                time.sleep(0.1)
            finally:
                client.close()

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / LOG).read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _groundwater(demo: Demo, simulators: list[Any]) -> Any:
    """The groundwater app over the demo (its homes are the simulated wells), after a first run; None if it fails."""
    from stadsdata.apps.groundwater.sim import PAGES, DemoApp
    from stadsdata.sim.wells import Wells

    wells = next((s for s in simulators if isinstance(s, Wells)), None)
    if wells is None:
        return None
    try:
        app = DemoApp(demo.dir, demo.url, wells)
    except Exception as e:  # the demo goes on without the app, and says why
        say(f"groundwater app: not started: {e}")
        return None
    _groundwater_update(app)
    say(f"groundwater app: residents' and city pages in {demo.dir / PAGES}")
    return app


def _groundwater_update(app: Any) -> None:
    try:
        report = app.update()
    except Exception as e:
        say(f"groundwater app: {e}")
        return
    for event in report.events:
        where = f"{event.depth:.2f} m below the crawlspace floor"
        say(f"groundwater alert {event.state}: {event.home} {event.kind} ({where})")
    for i in report.issues:
        say(f"groundwater sensor {i.problem}: {i.home}: {i.detail}")


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def say(text: str) -> None:
    """Tell the user on stderr (stdout has the URLs, for scripts)."""
    print(text, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # The first SIGTERM stops the demo; another one while it stops (a service manager or a shell sending it
    # again) would interrupt the stopping itself, so it is ignored from now on.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from stadsdata.sim import city
    from stadsdata.sim.feed import Client, FeedError, Live, backfill, instant, mapping_toml, seed

    signal.signal(signal.SIGTERM, _interrupt)  # stop the server on SIGTERM as on Ctrl-C
    started = time.monotonic()
    try:
        demo = Demo(args)
    except (DemoError, OSError) as e:
        print(f"stadsdata demo: {e}", file=sys.stderr)
        return 2
    try:
        say(f"stadsdata demo in {demo.dir} (seed {demo.seed}); server log {demo.dir / LOG}")
        demo.start()
        simulators = city(demo.seed, demo.anchor)
        client = Client(demo.url)
        seeded = seed(client, simulators)
        mapping = demo.dir / MAPPING
        text = mapping_toml(seeded)
        if mapping.read_text() != text:  # the server reads the mapping when it starts
            mapping.write_text(text)
            demo.stop()
            demo.start()
            client.close()
        say(f"{len(seeded)} simulated sensor stations; filling in {args.days:g} days of history")
        now = time.time()
        created = backfill(client, seeded, now - args.days * DAY, now, progress=args.progress)
        say(f"{created} observations of history added ({time.monotonic() - started:.0f} s)")
        groundwater = _groundwater(demo, simulators)
        print(f"Dashboard: {demo.url}/", flush=True)
        print(f"SensorThings API: {demo.url}/v1.1", flush=True)
        say("feeding live readings (LoRaWAN webhook and HTTP); Ctrl-C stops")
        live = Live(client, seeded, demo.secret, now, args.speed)
        stop_at = None if args.live_for is None else time.monotonic() + args.live_for

        def report(feed: Live) -> None:
            last = "" if feed.last_sent is None else f", the newest of {instant(feed.last_sent)}"
            say(f"live: {feed.sent} observations sent{last}")
            if groundwater is not None:
                _groundwater_update(groundwater)

        def done() -> bool:
            if demo.server is None or demo.server.poll() is not None:
                raise DemoError(f"the server stopped:\n{demo.log_tail()}")
            return stop_at is not None and time.monotonic() >= stop_at

        live.run(until=done, report=report)
        return 0
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except (DemoError, FeedError, OSError) as e:
        say(f"stadsdata demo: {e}")
        return 1
    finally:
        demo.stop()
