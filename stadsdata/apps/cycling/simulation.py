"""One SUMO run of a scenario: the actuated light, the cycling app at a penetration rate, and tripinfo.

SUMO runs in this process through libsumo, which is several times faster than TraCI's socket
protocol (no message round trip per call: the controller reads ten detectors and the app reads
every app user's position each step). libsumo allows one simulation per process at a time, so
runs are sequential within a process; ``evaluate`` can spread runs over processes.

The app: each cyclist is an app user with probability ``penetration``. Once a second an app
user's phone reports position, speed and heading with GNSS errors: a position error that
wanders (first-order Gauss-Markov, ``gnss_sigma`` metres, ``gnss_tau`` seconds correlation)
as phone fixes in a city do, white noise on speed and heading. The reports go to a
``PriorityService`` that sends requests to the ``SumoController``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import random
import shutil
import subprocess
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from stadsdata.apps.cycling.controller import SignalPlan, SumoController
from stadsdata.apps.cycling.eta import Fix
from stadsdata.apps.cycling.requests import PriorityService, ServiceSettings, Status
from stadsdata.apps.cycling.topology import Intersection
from stadsdata.apps.cycling.topology import load as load_topology

SCENARIOS = Path(__file__).parent / "scenarios"
INSTALL_HINT = "SUMO is not installed; install it with: pip install 'stadsdata[cycling]'"


class SumoMissing(RuntimeError):
    """SUMO (the optional extra ``stadsdata[cycling]``) is not installed."""


class ScenarioError(ValueError):
    """A scenario that cannot be found or read."""


def load_libsumo() -> ModuleType:
    """The libsumo module, or ``SumoMissing`` with the install command."""
    try:
        # libsumo prints a warning about pyarrow versions on import (it bundles its own Arrow for Parquet
        # output, which we do not use); keep stdout clean for tables.
        with contextlib.redirect_stdout(io.StringIO()):
            import libsumo
    except ImportError as e:
        raise SumoMissing(INSTALL_HINT) from e
    module: ModuleType = libsumo
    return module


def netconvert_binary() -> Path:
    """netconvert from the eclipse-sumo wheel (``sumo.SUMO_HOME``), or from $SUMO_HOME or PATH."""
    try:
        import sumo

        candidate = Path(sumo.SUMO_HOME) / "bin" / "netconvert"
        if candidate.exists():
            return candidate
    except ImportError:
        pass
    home = os.environ.get("SUMO_HOME")
    if home and (Path(home) / "bin" / "netconvert").exists():
        return Path(home) / "bin" / "netconvert"
    found = shutil.which("netconvert")
    if found:
        return Path(found)
    raise SumoMissing(INSTALL_HINT)


@dataclass(frozen=True)
class Scenario:
    directory: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.directory.name))

    def file(self, key: str) -> Path:
        return self.directory / str(self.config[key])

    @property
    def intersection(self) -> Intersection:
        return load_topology(self.file("intersection"))

    @property
    def plan(self) -> SignalPlan:
        return SignalPlan.from_config(self.config["signal"])

    @property
    def step_length(self) -> float:
        return float(self.config.get("step_length", 0.5))

    @property
    def warmup(self) -> float:
        return float(self.config.get("warmup", 300))


def bundled() -> list[str]:
    return sorted(p.name for p in SCENARIOS.iterdir() if (p / "scenario.toml").exists())


def load_scenario(name: str | Path) -> Scenario:
    """A bundled scenario by name, or a directory (or its scenario.toml) on disk."""
    path = Path(name)
    if not path.exists() and (SCENARIOS / str(name)).is_dir():
        path = SCENARIOS / str(name)
    if path.is_dir():
        path = path / "scenario.toml"
    if not path.exists():
        raise ScenarioError(f"no scenario {str(name)!r}: give a directory with scenario.toml, or one of {bundled()}")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: {e}") from None
    for key in ("nodes", "edges", "connections", "detectors", "intersection", "demand", "signal"):
        if key not in config:
            raise ScenarioError(f"{path}: {key!r} is missing")
    return Scenario(path.parent, config)


def build_network(scenario: Scenario, workdir: Path) -> Path:
    """The SUMO network, built with netconvert from the scenario's plain XML (once per content)."""
    sources = [scenario.file(k) for k in ("nodes", "edges", "connections")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    net = workdir / f"network-{digest}.net.xml"
    if net.exists():
        return net
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = net.with_suffix(f".{os.getpid()}.tmp.xml")
    binary = netconvert_binary()
    env = dict(os.environ, SUMO_HOME=os.environ.get("SUMO_HOME", str(binary.parent.parent)))
    cmd = [
        str(binary),
        "--node-files", str(sources[0]),
        "--edge-files", str(sources[1]),
        "--connection-files", str(sources[2]),
        "--proj.utm", "--no-turnarounds", "--no-warnings", "--xml-validation", "never",
        "-o", str(tmp),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ScenarioError(f"netconvert failed: {done.stderr.strip() or done.stdout.strip()}")
    tmp.replace(net)
    return net


def write_routes(scenario: Scenario, path: Path, end: float) -> None:
    """Vehicle types and Poisson flows per movement from the scenario's hourly demand."""
    root = ET.Element("routes")
    for name, attrs in scenario.config.get("vehicles", {}).items():
        ET.SubElement(root, "vType", {"id": name, **{k: str(v) for k, v in attrs.items()}})
    for vtype, movements in scenario.config["demand"].items():
        for i, (origin, destination, per_hour) in enumerate(movements):
            if float(per_hour) <= 0:
                continue
            ET.SubElement(
                root,
                "flow",
                {
                    "id": f"{vtype}_{origin}_{destination}_{i}",
                    "type": vtype,
                    "begin": "0",
                    "end": f"{end:g}",
                    "from": origin,
                    "to": destination,
                    "period": f"exp({float(per_hour) / 3600:.6f})",
                    "departLane": "best",
                    "departSpeed": "desired",
                },
            )
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


@dataclass(frozen=True)
class RunConfig:
    seed: int
    penetration: float = 0.0
    """Share of cyclists using the app, 0..1; 0 is the baseline without the app."""
    window: float = 20.0
    """Seconds before arrival at which the app sends its request."""
    duration: float = 3600.0
    """Simulated seconds counted after the warm-up."""
    gnss_sigma: float = 4.0
    gnss_tau: float = 5.0
    speed_sigma: float = 0.4
    heading_sigma: float = 10.0


@dataclass(frozen=True)
class Trip:
    id: str
    vtype: str
    depart: float
    duration: float
    time_loss: float
    waiting_count: int
    waiting_time: float
    depart_delay: float = 0.0
    """Time spent waiting to enter the network: large values would mean queues reaching the model's edge."""
    app: bool = False


@dataclass
class RunResult:
    config: RunConfig
    trips: list[Trip]
    simulated: float
    wall: float
    requests: dict[str, int] = field(default_factory=dict)
    """Counts by status: ``requested`` distinct requests; ``granted`` and ``rejected`` answers (updates and retries
    included); ``served`` and ``cancelled`` requests by how they ended."""

    def of(self, vtype: str, app: bool | None = None) -> list[Trip]:
        return [t for t in self.trips if t.vtype == vtype and (app is None or t.app == app)]


@dataclass
class _Phone:
    station: str
    ex: float = 0.0
    ey: float = 0.0


def run(scenario: Scenario, config: RunConfig, workdir: Path) -> RunResult:
    """Simulate ``config`` once and return the trips that started after the warm-up."""
    sumo = load_libsumo()
    net = build_network(scenario, workdir)
    end = scenario.warmup + config.duration
    tag = f"s{config.seed}-p{config.penetration:g}-w{config.window:g}-{os.getpid()}"
    routes = workdir / f"routes-{tag}.rou.xml"
    tripinfo = workdir / f"tripinfo-{tag}.xml"
    write_routes(scenario, routes, end)
    intersection = scenario.intersection
    rng = random.Random(config.seed)
    step = scenario.step_length
    started = time.perf_counter()
    # fmt: off
    sumo.start([
        "sumo", "-n", str(net), "-r", str(routes), "-a", str(scenario.file("detectors")),
        "--step-length", f"{step:g}", "--seed", str(config.seed), "--end", f"{end:g}",
        "--tripinfo-output", str(tripinfo), "--no-step-log", "true", "--no-warnings", "true",
        "--duration-log.disable", "true", "--xml-validation", "never", "--time-to-teleport", "300",
    ])
    # fmt: on
    phones: dict[str, _Phone] = {}
    app_users: set[str] = set()
    try:
        signal = scenario.config["signal"]
        controller = SumoController(
            sumo, signal["tls"], scenario.plan, dict(signal["groups"]), set(signal.get("permissive", ()))
        )
        service = PriorityService(intersection, controller, ServiceSettings(window=config.window))
        decay = math.exp(-1.0 / config.gnss_tau)
        drive = config.gnss_sigma * math.sqrt(1 - decay * decay)
        bike_type = "bicycle"
        while True:
            now = float(sumo.simulation.getTime())
            if now >= end:
                break
            for vid in sumo.simulation.getDepartedIDList():
                # Drawn per cyclist from (seed, id), so that the app users at 50 % are among those at 100 %.
                if (
                    config.penetration > 0
                    and sumo.vehicle.getTypeID(vid) == bike_type
                    and random.Random(f"{config.seed}:{vid}").random() < config.penetration
                ):
                    app_users.add(vid)
                    phones[vid] = _Phone(
                        f"{rng.getrandbits(64):016x}",
                        rng.gauss(0, config.gnss_sigma),
                        rng.gauss(0, config.gnss_sigma),
                    )
            for vid in sumo.simulation.getArrivedIDList():
                phones.pop(vid, None)
            if abs(now - round(now)) < 1e-6:
                for vid, phone in phones.items():
                    x, y = sumo.vehicle.getPosition(vid)
                    phone.ex = decay * phone.ex + rng.gauss(0, drive)
                    phone.ey = decay * phone.ey + rng.gauss(0, drive)
                    lon, lat = sumo.simulation.convertGeo(x + phone.ex, y + phone.ey)
                    speed = max(0.0, sumo.vehicle.getSpeed(vid) + rng.gauss(0, config.speed_sigma))
                    heading = (sumo.vehicle.getAngle(vid) + rng.gauss(0, config.heading_sigma)) % 360
                    service.observe(Fix(phone.station, now, lon, lat, speed, heading))
                service.sweep(now)
            controller.step(now)
            sumo.simulationStep()
    finally:
        sumo.close()
    wall = time.perf_counter() - started
    counts = {s.value: 0 for s in Status}
    for event in service.events:
        if event.request.status is not Status.REQUESTED or event.request.sequence == 0:
            counts[event.request.status.value] += 1
    trips = [t for t in parse_tripinfo(tripinfo, app_users) if t.depart >= scenario.warmup]
    for f in (routes, tripinfo):
        f.unlink(missing_ok=True)
    return RunResult(config, trips, end, wall, counts)


def parse_tripinfo(path: Path, app_users: set[str] | None = None) -> list[Trip]:
    """The trips of a SUMO tripinfo output file."""
    users = app_users or set()
    trips: list[Trip] = []
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag != "tripinfo":
            continue
        a = elem.attrib
        trips.append(
            Trip(
                id=a["id"],
                vtype=a.get("vType", ""),
                depart=float(a["depart"]),
                duration=float(a["duration"]),
                time_loss=float(a["timeLoss"]),
                waiting_count=int(a.get("waitingCount", "0")),
                waiting_time=float(a.get("waitingTime", "0")),
                depart_delay=float(a.get("departDelay", "0")),
                app=a["id"] in users,
            )
        )
        elem.clear()
    return trips
