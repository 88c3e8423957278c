"""``stadsdata groundwater``: homes onto the platform, alert runs, a well's hydrology and its BRO export.

Imports of the app (and of pastas) happen inside ``run``, so that ``stadsdata --help`` works without
the optional extra installed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stadsdata.apps.groundwater.registry import Stored


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = subparsers.add_parser(
        "groundwater",
        help="groundwater under homes: crawlspace wells, alerts, sensor health, hydrology, BRO export",
        description="The groundwater app (docs/groundwater.md): homes with a crawlspace well, their levels in m NAP "
        "and below the crawlspace floor, alerts to residents, sensor health, pastas models and BRO export. "
        "It works on a running stadsdata through its HTTP API (--url, e.g. http://127.0.0.1:8080/v1.1).",
    )
    sub = gw.add_subparsers(dest="groundwater_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--homes", metavar="FILE", required=True, help="the homes file (TOML, docs/groundwater.md)")
        p.add_argument("--url", metavar="URL", required=True, help="the service root, e.g. http://127.0.0.1:8080/v1.1")

    homes = sub.add_parser("homes", help="the monitored homes", description="The homes file and the platform.")
    homes_sub = homes.add_subparsers(dest="homes_command", metavar="ACTION", required=True)
    load = homes_sub.add_parser(
        "load",
        help="create or update each home's Thing and Datastreams",
        description="Store every home of the homes file on the platform (address and e-mail stay in the file) and "
        "write the ingest mapping of their sensors.",
    )
    common(load)
    load.add_argument("--mapping", metavar="FILE", help="write the ingest mapping of the homes' devices here")

    alerts = sub.add_parser("alerts", help="derive levels, send alerts, check sensor health")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    run_p = alerts_sub.add_parser(
        "run",
        help="one run: new readings → levels → alerts and sensor health (from cron or a timer)",
        description="Convert new raw readings into levels (recomputing after calibration changes), evaluate each "
        "home's criteria, deliver alerts once (webhook, e-mail) and print sensor health problems.",
    )
    common(run_p)
    run_p.add_argument("--state", metavar="FILE", default="groundwater-alerts.json", help="the alert state file")
    run_p.add_argument("--webhook", metavar="URL", action="append", default=[], help="POST alerts here (repeat)")
    run_p.add_argument("--smtp", metavar="HOST:PORT", help="e-mail alerts to residents through this SMTP server")
    run_p.add_argument("--sender", metavar="ADDRESS", default="grondwater@localhost", help="the e-mails' From")

    analyse = sub.add_parser(
        "analyse",
        help="GHG/GLG/GVG and the rainfall response of one well (pastas)",
        description="Dutch statistics of the well's levels and a pastas rainfall-response model with the "
        "precipitation and evaporation Datastreams as inputs: response time, fit, and a forecast after given rain. "
        "Needs the extra: pip install 'stadsdata[groundwater]'.",
    )
    analyse.add_argument("well", metavar="WELL", help="the home's id in the homes file")
    common(analyse)
    analyse.add_argument("--precipitation", type=int, metavar="ID", required=True, help="daily precipitation (mm)")
    analyse.add_argument(
        "--evaporation", type=int, metavar="ID", required=True, help="daily reference evaporation (mm)"
    )
    analyse.add_argument(
        "--rain", metavar="MM,MM,…", default="", help="forecast rain of the coming days in mm, e.g. 12,4,0,0"
    )

    pages = sub.add_parser(
        "pages",
        help="write the residents' pages and the city's neighbourhood page (HTML)",
        description="One page per home (the resident's own well: level against the floor, rain, summary in Dutch "
        "and English) and the city's page (neighbourhoods with at least 5 homes, on the map). Serve the residents' "
        "pages only behind a login that lets each resident see their own.",
    )
    common(pages)
    pages.add_argument("--out", metavar="DIR", default="groundwater-pages", help="where the pages go")
    pages.add_argument("--state", metavar="FILE", default="groundwater-alerts.json", help="the alert state file")
    pages.add_argument("--precipitation", type=int, metavar="ID", help="daily precipitation Datastream (mm)")
    pages.add_argument("--staff", action="store_true", help="include the list of homes at risk in the city's page")
    pages.add_argument("--days", type=float, default=28.0, help="weeks shown to residents, in days (default: 28)")

    export = sub.add_parser(
        "export",
        help="a well's levels for BRO (GLD addition as JSON) or as CSV with the same fields",
        description="The well's levels with BRO's GLD fields and quality status per value (docs/groundwater.md).",
    )
    export.add_argument("well", metavar="WELL")
    common(export)
    export.add_argument("--format", choices=("bro", "csv"), default="csv")
    export.add_argument("--status", choices=("voorlopig", "volledigBeoordeeld"), default="voorlopig")
    export.add_argument("--gmw", metavar="BRO-ID", default="", help="the tube's well in BRO (GMW…)")
    export.add_argument("--tube", type=int, default=1, help="the tube number (default: 1)")
    export.add_argument("--kvk", metavar="NUMBER", default="", help="the investigator's KvK number")
    export.add_argument("--days", type=float, default=365.0, help="days back from now (default: 365)")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")


def run(args: argparse.Namespace) -> int:
    from stadsdata.apps.groundwater.platform import PlatformError
    from stadsdata.apps.groundwater.registry import RegistryError

    try:
        if args.groundwater_command == "homes":
            return _homes(args)
        if args.groundwater_command == "alerts":
            return _alerts(args)
        if args.groundwater_command == "analyse":
            return _analyse(args)
        if args.groundwater_command == "export":
            return _export(args)
        if args.groundwater_command == "pages":
            return _pages(args)
    except RegistryError as e:
        print(f"stadsdata groundwater: {e}", file=sys.stderr)
        return 2
    except PlatformError as e:
        print(f"stadsdata groundwater: {e}", file=sys.stderr)
        return 1
    return 2


def _homes(args: argparse.Namespace) -> int:
    from stadsdata.apps.groundwater import registry
    from stadsdata.apps.groundwater.platform import Platform, http_transport

    reg = registry.load(args.homes)
    platform = Platform(http_transport(args.url))
    stored = [registry.store(platform, h) for h in reg.homes]
    for s in stored:
        print(f"{s.home.id}: Thing {s.thing}, Datastreams {s.datastreams}")
    if args.mapping:
        Path(args.mapping).write_text(registry.mapping_toml(stored))
        print(f"ingest mapping written to {args.mapping}; point the server at it and restart it")
    return 0


def _alerts(args: argparse.Namespace) -> int:
    from stadsdata.apps.groundwater import monitor, registry
    from stadsdata.apps.groundwater.alerts import Notifier, SmtpNotifier, WebhookNotifier
    from stadsdata.apps.groundwater.platform import Platform, http_transport

    reg = registry.load(args.homes)
    notifiers: list[Notifier] = [WebhookNotifier(u) for u in args.webhook]
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        notifiers.append(SmtpNotifier(host, int(port), args.sender, lambda home: [reg.home(home).email]))
    report = monitor.run(Platform(http_transport(args.url)), reg, Path(args.state), notifiers)
    print(f"{report.derived} level(s) derived")
    for home, since in report.recomputed.items():
        print(f"{home}: levels recomputed from {since.isoformat()} (calibration changed)")
    for e in report.events:
        print(
            f"alert {e.state}: {e.home} {e.kind} at {e.time.isoformat()} ({e.depth:.2f} m below the crawlspace floor)"
        )
    for i in report.issues:
        print(f"sensor {i.problem}: {i.home}: {i.detail}")
    for p in report.problems:
        print(f"not delivered (tried again next run): {p}", file=sys.stderr)
    return 1 if report.problems else 0


def _series(args: argparse.Namespace, days: float | None) -> tuple[Stored, list[tuple[datetime, float]]]:
    """The well's levels of the last ``days`` (None: its whole record)."""
    from stadsdata.apps.groundwater import registry
    from stadsdata.apps.groundwater.platform import Platform, http_transport

    reg = registry.load(args.homes)
    platform = Platform(http_transport(args.url))
    stored = registry.lookup(platform, reg.home(args.well))
    since = None if days is None else datetime.now(UTC) - timedelta(days=days)
    rows = platform.observations(stored.datastreams["level"], after=since)
    return stored, [(t, float(v)) for t, v in rows]


def _analyse(args: argparse.Namespace) -> int:
    import pandas as pd

    from stadsdata.apps.groundwater import hydrology
    from stadsdata.apps.groundwater.platform import Platform, http_transport

    _, rows = _series(args, None)  # the whole record: GHG, GLG and GVG are over years
    if not rows:
        print(f"stadsdata groundwater: well {args.well} has no levels yet", file=sys.stderr)
        return 1
    levels = pd.Series([v for _, v in rows], index=pd.DatetimeIndex([t for t, _ in rows]))
    stats = hydrology.dutch_statistics(levels)
    mark = " (provisional: fewer than 8 years)" if stats.provisional else ""
    for name in ("ghg", "glg", "gvg"):
        value = getattr(stats, name)
        print(f"{name.upper()}: {'-' if value is None else f'{value:.2f} m NAP'}{mark}")
    platform = Platform(http_transport(args.url))

    def daily(ds: int) -> pd.Series:
        obs = platform.observations(ds)
        s = pd.Series([float(v) for _, v in obs], index=pd.DatetimeIndex([t for t, _ in obs]))
        s.index = s.index.tz_convert("UTC").tz_localize(None).normalize()
        return s.groupby(level=0).sum()

    try:
        fit = hydrology.fit_response(levels, daily(args.precipitation), daily(args.evaporation))
    except hydrology.HydrologyError as e:
        print(f"no rainfall-response model: {e}")
        return 0
    print(f"response time: t50 {fit.t50:.1f} days, t90 {fit.t90:.1f} days")
    print(f"fit: EVP {fit.evp:.1f} %, RMSE {fit.rmse * 100:.1f} cm, R² {fit.rsq:.2f}")
    if args.rain:
        rain = [float(x) for x in args.rain.split(",")]
        last = fit.model.stressmodels["recharge"].prec.series_original.index[-1]
        ahead = fit.forecast(pd.Series(rain, index=pd.date_range(last + pd.Timedelta(days=1), periods=len(rain))))
        for day, value in ahead.items():
            print(f"forecast {day.date()}: {value:.2f} m NAP")
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from stadsdata.apps.groundwater import export

    stored, rows = _series(args, args.days)
    if not rows:
        print(f"stadsdata groundwater: well {args.well} has no levels in the last {args.days:g} days", file=sys.stderr)
        return 1
    kind = stored.home.kind
    dossier = export.Dossier(args.gmw, args.tube, args.kvk, "pressure" if kind == "pressure" else "ultrasonic")
    addition = export.bro_addition(dossier, rows, args.status)
    text = json.dumps(addition, indent=2) + "\n" if args.format == "bro" else export.to_csv(addition)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _pages(args: argparse.Namespace) -> int:
    from stadsdata.apps.groundwater import registry, views
    from stadsdata.apps.groundwater.alerts import State
    from stadsdata.apps.groundwater.platform import Platform, http_transport

    reg = registry.load(args.homes)
    out = Path(args.out)
    views.write_pages(
        Platform(http_transport(args.url)),
        reg,
        State.load(Path(args.state)),
        out,
        precipitation=args.precipitation,
        staff=args.staff,
        days=args.days,
    )
    print(f"{len(reg.homes)} resident page(s) in {out / 'homes'}/, the city's page {out / 'city.html'}")
    return 0
