"""``stadsdata cycling``: evaluate priority for cyclists in SUMO, and load intersections onto the platform.

Imports of SUMO, matplotlib and the simulation happen inside ``run``, so that ``stadsdata --help``
works without the optional extra installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("an empty list")
    return values


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cycling = subparsers.add_parser(
        "cycling",
        help="cyclists get green sooner: evaluate priority requests in SUMO, load intersections",
        description="Priority requests from the cycling app to traffic lights (docs/cycling.md).",
    )
    sub = cycling.add_subparsers(dest="cycling_command", metavar="ACTION", required=True)
    ev = sub.add_parser(
        "evaluate",
        help="run a SUMO scenario for the baseline and app penetration rates; table and plot",
        description="Simulate SCENARIO in Eclipse SUMO without the app (baseline) and with app penetration rates "
        "× request windows, several seeds each. Writes a Markdown table, JSON, CSV and a plot (PNG, SVG) of "
        "cyclist delay, share of cyclists stopped and car delay with 95 %% confidence intervals, all from "
        "SUMO's tripinfo output. Needs the extra: pip install 'stadsdata[cycling]'.",
        epilog="example: stadsdata cycling evaluate hengelosestraat --rates 0,25,50,100 --windows 10,20 --seeds 5",
    )
    ev.add_argument("scenario", metavar="SCENARIO", help="a bundled scenario (hengelosestraat) or a directory")
    ev.add_argument(
        "--rates", type=_floats, default=[0, 25, 50, 100], help="app penetration rates in %% (default: 0,25,50,100)"
    )
    ev.add_argument(
        "--windows", type=_floats, default=[20.0], help="request windows in seconds before arrival (default: 20)"
    )
    ev.add_argument("--seeds", type=int, default=5, help="random seeds per variant (default: 5)")
    ev.add_argument("--hours", type=float, default=1.0, help="simulated hours per run after the warm-up (default: 1)")
    ev.add_argument(
        "--out", metavar="DIR", default="cycling-evaluation", help="where results go (default: ./cycling-evaluation)"
    )
    ev.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="simulations at once, each in its own process (default: 1; SUMO uses one core per simulation)",
    )
    ev.add_argument(
        "--url", metavar="URL", help="a running stadsdata (e.g. http://127.0.0.1:8080/v1.1): store the results there"
    )
    ev.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    inter = sub.add_parser("intersections", help="intersection topology files", description="Intersection topologies.")
    inter_sub = inter.add_subparsers(dest="intersections_command", metavar="ACTION", required=True)
    check = inter_sub.add_parser("check", help="check an intersection file and summarise it")
    check.add_argument("file", metavar="FILE")
    load = inter_sub.add_parser("load", help="store an intersection on a running stadsdata through its HTTP API")
    load.add_argument("file", metavar="FILE")
    load.add_argument("--url", metavar="URL", required=True, help="the service root, e.g. http://127.0.0.1:8080/v1.1")
    _add_serve(sub)


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="the live priority service: cyclist positions in over MQTT, priority requests out to the platform",
        description="Subscribe to the cyclist positions Datastreams of the intersections on a running stadsdata "
        "(stored with 'intersections load'), turn position reports into priority requests for a controller, and "
        "write every request and answer as an Observation of the signal group's priority requests Datastream. "
        "Deletes position reports older than --retention minutes. Runs until stopped (SIGINT, SIGTERM).",
        epilog="example: stadsdata cycling serve --url http://127.0.0.1:8080/v1.1 --mqtt mqtt://127.0.0.1:1883",
    )
    serve.add_argument("--url", metavar="URL", required=True, help="the service root, e.g. http://127.0.0.1:8080/v1.1")
    serve.add_argument(
        "--mqtt", metavar="URL", required=True,
        help="the platform's MQTT broker, e.g. mqtt://127.0.0.1:1883 (mqtts:// for TLS; user:password@ if needed)",
    )  # fmt: skip
    serve.add_argument(
        "--intersection", metavar="NAME", action="append", default=[],
        help="serve only this intersection (its id or name; repeatable; default: every intersection on the platform)",
    )  # fmt: skip
    serve.add_argument(
        "--controller", choices=("simulated",), default="simulated",
        help="the controller adapter: 'simulated' runs the signal plan in this process on the wall clock and "
        "switches no traffic light (default: simulated)",
    )  # fmt: skip
    serve.add_argument(
        "--scenario", metavar="SCENARIO",
        help="the scenario whose signal plan the simulated controller runs (default: the bundled scenario of the "
        "same intersection id)",
    )  # fmt: skip
    serve.add_argument(
        "--window", type=float, default=20.0, metavar="S",
        help="send a request when the estimated arrival is at most S seconds away (default: 20)",
    )  # fmt: skip
    serve.add_argument(
        "--retention", type=float, default=10.0, metavar="MIN",
        help="delete position reports older than MIN minutes (default: 10)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from stadsdata.apps.cycling.topology import TopologyError

    try:
        if args.cycling_command == "evaluate":
            return _evaluate(args)
        if args.cycling_command == "intersections":
            return _intersections(args)
        if args.cycling_command == "serve":
            return _serve(args)
    except TopologyError as e:
        print(f"stadsdata cycling: {e}", file=sys.stderr)
        return 2
    return 2


def _intersections(args: argparse.Namespace) -> int:
    from stadsdata.apps.cycling.topology import load

    intersection = load(args.file)
    if args.intersections_command == "check":
        print(f"{intersection.id}: {intersection.name}")
        for approach in intersection.approaches:
            lanes = ", ".join(f"{lane.id} ({lane.kind}, group {lane.signal_group})" for lane in approach.lanes)
            print(f"  {approach.id}: {lanes}")
        return 0
    from stadsdata.apps.cycling.platform import Platform, PlatformError, http_transport

    try:
        thing = Platform(http_transport(args.url)).store_intersection(intersection)
    except PlatformError as e:
        print(f"stadsdata cycling: {e}", file=sys.stderr)
        return 1
    print(f"{intersection.id}: Thing {thing} at {args.url.rstrip('/')}/Things({thing})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from stadsdata.apps.cycling.simulation import ScenarioError, SumoMissing, load_libsumo, load_scenario

    try:
        load_libsumo()
        scenario = load_scenario(args.scenario)
    except (SumoMissing, ScenarioError) as e:
        print(f"stadsdata cycling: {e}", file=sys.stderr)
        return 2
    from stadsdata.apps.cycling.evaluate import evaluate

    if any(not 0 <= r <= 100 for r in args.rates) or args.seeds < 1 or args.hours <= 0 or args.jobs < 1:
        print("stadsdata cycling: rates are 0..100, --seeds and --jobs at least 1, --hours above 0", file=sys.stderr)
        return 2
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="stadsdata-sumo-") as tmp:
        evaluation = evaluate(
            scenario,
            [r / 100 for r in args.rates],
            args.windows,
            args.seeds,
            args.hours,
            Path(tmp),
            progress=progress,
            jobs=args.jobs,
        )
    written = evaluation.write(out)
    print(evaluation.table())
    speed = evaluation.simulated / evaluation.wall if evaluation.wall else float("nan")
    print(f"\n{len(written)} files in {out}/; simulated {evaluation.simulated / 3600:.1f} h at {speed:.0f}× real time")
    if args.url:
        from stadsdata.apps.cycling.platform import Platform, PlatformError, http_transport

        platform = Platform(http_transport(args.url))
        try:
            intersection = scenario.intersection
            platform.store_intersection(intersection)
            n = platform.store_evaluation(evaluation, intersection.position)
        except PlatformError as e:
            print(f"stadsdata cycling: results written to {out}/ but not stored: {e}", file=sys.stderr)
            return 1
        print(f"{n} observations stored at {args.url}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import logging
    import signal

    from stadsdata.apps.cycling.live import LiveService, SetupError, build_controllers, discover
    from stadsdata.apps.cycling.platform import PlatformError, http_transport
    from stadsdata.apps.cycling.requests import ServiceSettings
    from stadsdata.apps.cycling.simulation import ScenarioError

    if args.window <= 0 or args.retention <= 0:
        print("stadsdata cycling: --window and --retention must be above 0", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    send = http_transport(args.url)
    try:
        sites = discover(
            send, args.intersection, build_controllers(args.controller, args.scenario), ServiceSettings(args.window)
        )
    except (PlatformError, SetupError, ScenarioError) as e:
        print(f"stadsdata cycling: {e}", file=sys.stderr)
        return 1
    for site in sites:
        print(
            f"{site.intersection.id}: positions on {site.topic}, requests to Datastreams "
            f"{', '.join(f'{g}: {d}' for g, d in sorted(site.requests.items()))}, {site.controller.label} controller",
            flush=True,
        )
    service = LiveService(sites, send, args.mqtt, retention=args.retention * 60)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await service.run()

    asyncio.run(main())
    return 0
