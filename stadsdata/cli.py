"""The ``stadsdata`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stadsdata import __version__
from stadsdata.settings import LOG_LEVELS, SYNCHRONOUS, Settings

if TYPE_CHECKING:
    from stadsdata.config import Effective

DESCRIPTION = """\
stadsdata: the city's own data platform. An OGC SensorThings API 1.1 server
on an embedded SQLite database; no other server needed.

  stadsdata demo                       a simulated, live Enschede with its dashboard at http://127.0.0.1:8080/
  stadsdata serve                      serve the API at http://127.0.0.1:8080/v1.1
  stadsdata serve --db city.db --port 9000
  stadsdata serve --config city.toml   settings from a TOML file (and STADSDATA_* variables)
  stadsdata config show --config city.toml   the settings in force, and where each comes from
  stadsdata db upgrade --db city.db    create or migrate a database without serving
  stadsdata backup --db city.db city-backup.db    a consistent copy, also while serving
  stadsdata restore city-backup.db --db city.db   bring a backup back
  stadsdata dead-letters list --db city.db         payloads ingestion could not take, and why
  stadsdata serve --access on          tokens, projects, roles and visibility enforced (docs/access.md)
  stadsdata token create --subject gw-service     an API token (printed once)
  stadsdata grant add gw-service groundwater writer --personal   a role in a project
  stadsdata erase --owner resident-1249becb       remove a resident's personal data
  stadsdata import knmi.csv --time date --value RH=3:0.1 --db city.db   time series from CSV/Parquet
  stadsdata cycling evaluate hengelosestraat   priority for cyclists at traffic lights, in SUMO
  stadsdata groundwater alerts run --homes homes.toml --url http://127.0.0.1:8080/v1.1   groundwater under homes
"""

SETTINGS_EPILOG = """\
Every option can also be set in a TOML file given with --config, under the option's name with
underscores (max_top = 500), or in the environment as STADSDATA_ and that name in capitals
(STADSDATA_MAX_TOP=500). A flag overrides the environment, which overrides the file, which
overrides the default. Invalid settings stop the start with exit status 2.
"""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of settings: keys named as the options, with underscores (e.g. max_top = 500)",
    )


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the database: a SQLite file, or a PostgreSQL URL postgresql://user:password@host:port/name "
        f"(PostGIS installed); created or migrated when needed (default: {Settings.db}; env STADSDATA_DB)",
    )


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """The flags of every setting; unset flags are None, so that the lower layers fill them."""
    _add_config(parser)
    _add_db(parser)
    parser.add_argument("--host", help=f"address to listen on (default: {Settings.host})")
    parser.add_argument("--port", type=int, help=f"port to listen on (default: {Settings.port})")
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="public URL of the service root used in links, e.g. https://data.enschede.nl/v1.1 "
        "(default: derived from each request)",
    )
    parser.add_argument(
        "--default-top",
        type=int,
        metavar="N",
        help=f"page size when a client does not ask for one with $top (default: {Settings.default_top})",
    )
    parser.add_argument(
        "--max-top",
        type=int,
        metavar="N",
        help=f"largest page size a client may ask for with $top (default: {Settings.max_top})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help=f"largest request body accepted, in bytes (default: {Settings.max_body_bytes})",
    )
    parser.add_argument(
        "--estimated-count-above",
        type=int,
        metavar="N",
        help="for requests with 'Prefer: count=estimated', answer $count with the database's estimate "
        f"when that is above N rows (PostgreSQL; default: {Settings.estimated_count_above})",
    )
    parser.add_argument(
        "--synchronous",
        choices=SYNCHRONOUS,
        help="FULL: a committed write survives power loss; NORMAL: faster, survives process crashes "
        f"but not power loss (SQLite; default: {Settings.synchronous})",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="INFO: one line per request (JSON when stderr is not a terminal); WARNING: only problems "
        f"(default: {Settings.log_level})",
    )
    parser.add_argument(
        "--mqtt-url",
        metavar="URL",
        help="an external MQTT broker such as mqtt://user:password@broker:1883 (default: the embedded broker)",
    )
    parser.add_argument(
        "--mqtt-port",
        type=int,
        metavar="N",
        help=f"port of the embedded MQTT broker; 0: none, MQTT off unless --mqtt-url (default: {Settings.mqtt_port})",
    )
    parser.add_argument(
        "--ingest-mapping",
        metavar="TOML",
        help="the file that maps LoRaWAN devices and MQTT topics to Datastreams (see docs/ingest.md); "
        "the webhook secret is set in the configuration file or STADSDATA_WEBHOOK_SECRET, not on the command line",
    )
    parser.add_argument(
        "--access",
        choices=("on", "off"),
        help="access control (docs/access.md): on enforces tokens, projects, roles and visibility; off lets every "
        f"request read and write everything (default: {Settings.access})",
    )
    parser.add_argument(
        "--anonymous",
        choices=("public", "none"),
        help="with access control on, what a request without a token may do: read public data, or nothing "
        f"(default: {Settings.anonymous})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stadsdata", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"stadsdata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve the SensorThings API",
        description="Serve the SensorThings API 1.1 at /v1.1. The database is created or migrated first. "
        "Every write answered with 2xx is committed to disk.",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings(serve)

    config = sub.add_parser("config", help="show the configuration", description="The configuration.")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = config_sub.add_parser(
        "show",
        help="print the settings in force as TOML, each with where it comes from",
        description="Print the settings `serve` would run with, given the same --config, environment and "
        "flags, as TOML; a comment says where each value comes from. The database password is masked.",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings(show)

    db = sub.add_parser("db", help="manage the database schema", description="Manage the database schema.")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    upgrade = db_sub.add_parser(
        "upgrade",
        help="create the database or migrate it to the newest schema",
        description="Create the database or migrate it to the newest schema. `serve` does this too on start.",
    )
    _add_config(upgrade)
    _add_db(upgrade)

    backup = sub.add_parser(
        "backup",
        help="write a consistent copy of the database, also while serving",
        description="Write a consistent snapshot of the database to OUT while the server may be running and "
        "writing: everything committed when the backup starts, nothing half. SQLite: the online backup API, "
        "into a self-contained SQLite file. PostgreSQL: pg_dump -Fc (on PATH or in "
        "/usr/lib/postgresql/*/bin).",
    )
    backup.add_argument("out", metavar="OUT", help="the backup file to write")
    _add_config(backup)
    _add_db(backup)
    backup.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    backup.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (SQLite; default: for databases above 64 MiB)",
    )

    restore = sub.add_parser(
        "restore",
        help="bring a backup back into a database",
        description="Bring back a backup made by `stadsdata backup` into the database. IN must be a stadsdata "
        "database at a schema revision this version knows. A database that holds data is not overwritten "
        "unless --force. SQLite: copied in through SQLite in one transaction. PostgreSQL: "
        "pg_restore --clean --if-exists --no-owner in one transaction. Stop the server first.",
    )
    restore.add_argument("src", metavar="IN", help="the backup file")
    _add_config(restore)
    _add_db(restore)
    restore.add_argument("--force", action="store_true", help="replace a database that holds data")

    letters = sub.add_parser(
        "dead-letters",
        help="list, show, replay or delete what ingestion could not take",
        description="Payloads that a connector could not decode, and readings the database refused, are kept "
        "with the reason as dead letters instead of stopping ingestion. List them, look at one, replay them "
        "once the cause is fixed (a device added to the mapping, a Datastream created), or delete them.",
    )
    letters_sub = letters.add_subparsers(dest="letters_command", metavar="ACTION", required=True)
    listing = letters_sub.add_parser("list", help="one line per dead letter: id, received, source, reason")
    show_one = letters_sub.add_parser("show", help="the reason and the payload of one dead letter")
    show_one.add_argument("id", type=int, metavar="ID")
    replay = letters_sub.add_parser(
        "replay",
        help="decode and ingest dead letters again",
        description="Decode each dead letter again with its connector and ingest it; a letter is removed in the "
        "same transaction that stores its readings, and readings refused again become a new letter. A letter "
        "is never stored twice, even when replayed twice.",
    )
    replay.add_argument("ids", type=int, nargs="*", metavar="ID", help="the letters to replay (default: all)")
    remove = letters_sub.add_parser("delete", help="delete dead letters")
    remove.add_argument("ids", type=int, nargs="+", metavar="ID")
    for action in (listing, show_one, replay, remove):
        _add_config(action)
        _add_db(action)
    for action in (listing, replay):
        action.add_argument("--source", help="only the letters of this source (e.g. ttn, file:…)")
    _add_import(sub)
    from stadsdata.access import cli as access_cli

    def common(action: argparse.ArgumentParser) -> None:
        _add_config(action)
        _add_db(action)

    access_cli.add_parsers(sub, common)
    from stadsdata import demo

    demo.add_parser(sub)
    from stadsdata.apps.cycling import cli as cycling_cli

    cycling_cli.add_parser(sub)
    from stadsdata.apps.groundwater import cli as groundwater_cli

    groundwater_cli.add_parser(sub)
    return parser


def _add_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from stadsdata.ingest.files import CHUNK_ROWS, DST_POLICIES, EMPTY_POLICIES, FORMATS

    imp = sub.add_parser(
        "import",
        help="import time series from a CSV or Parquet file",
        description="Import Observations from a CSV or Parquet file on the bulk path, in chunks of rows that\n"
        "each commit as a whole. Run the same command again after an interruption: chunks committed\n"
        "before are skipped. Rows that cannot be used go to FILE.rejected.csv with the reason; they do\n"
        "not stop the import. The Datastreams must exist. See docs/import.md.",
        epilog="examples:\n"
        "  stadsdata import knmi.csv --time date --time-format %Y-%m-%d --value precip_mm=1 --value temp_mean_c=2\n"
        "  stadsdata import meting.csv --decimal , --time tijd --time-format '%d-%m-%Y %H:%M' "
        "--timezone Europe/Amsterdam --value waarde=4\n"
        "  stadsdata import series.parquet --mapping series.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", metavar="FILE", help="a CSV file with a header line, or a Parquet file (.parquet, .pq)")
    _add_config(imp)
    _add_db(imp)
    imp.add_argument("--mapping", metavar="TOML", help="a mapping file (docs/import.md); flags override it")
    imp.add_argument("--time", metavar="COLUMN", help="the column of the phenomenon time")
    imp.add_argument(
        "--time-format",
        metavar="FORMAT",
        help="iso (ISO 8601, the default), epoch-s, epoch-ms, or a strptime pattern such as '%%d-%%m-%%Y %%H:%%M'",
    )
    imp.add_argument(
        "--timezone", metavar="ZONE", help="IANA zone of times without an offset, e.g. Europe/Amsterdam (default: UTC)"
    )
    imp.add_argument(
        "--dst",
        choices=DST_POLICIES,
        help="a local time that occurs twice or not at all when clocks change: reject the row (default), take the "
        "earlier or later instant, or infer from the order of rows (first occurrence earlier)",
    )
    imp.add_argument(
        "--value",
        action="append",
        metavar="COLUMN=ID[:SCALE[:OFFSET]]",
        help="a value column and its Datastream id; stored as value*SCALE+OFFSET (repeat for more columns)",
    )
    imp.add_argument("--datastream-column", metavar="COLUMN", help="long format: the column of Datastream ids or names")
    imp.add_argument("--value-column", metavar="COLUMN", help="long format: the column of values")
    imp.add_argument(
        "--datastream",
        action="append",
        metavar="NAME=ID",
        help="long format: a name in the Datastream column and its Datastream id (repeat; ids are taken as they are)",
    )
    imp.add_argument("--result-time", metavar="COLUMN", help="the column of the result time (default: none)")
    imp.add_argument("--decimal", choices=(".", ","), help="the decimal separator of values (default: .)")
    imp.add_argument("--delimiter", metavar="CHAR", help="the CSV delimiter; \\t for a tab (default: detected)")
    imp.add_argument("--empty", choices=EMPTY_POLICIES, help="an empty value cell: skip it (default) or reject it")
    imp.add_argument("--encoding", help="the CSV file's encoding (default: utf-8, with or without BOM)")
    imp.add_argument("--format", choices=FORMATS, help="default: parquet for .parquet/.pq, else csv")
    imp.add_argument(
        "--chunk-rows", type=int, metavar="N", help=f"rows per chunk, each one transaction (default: {CHUNK_ROWS})"
    )
    imp.add_argument("--rejected", metavar="PATH", help="where rejected rows go (default: FILE.rejected.csv)")
    imp.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    from stadsdata.backup import BackupError
    from stadsdata.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "config":
            if args.config_command == "show":
                return config_show(args)
            parser.parse_args(["config", "--help"])
        if args.command == "db":
            if args.db_command == "upgrade":
                return db_upgrade(args)
            parser.parse_args(["db", "--help"])
        if args.command == "backup":
            return backup(args)
        if args.command == "restore":
            return restore(args)
        if args.command == "import":
            return import_file(args)
        if args.command == "demo":
            from stadsdata import demo

            return demo.run(args)
        if args.command == "dead-letters":
            return dead_letters(args)
        from stadsdata.access import cli as access_cli

        if args.command in access_cli.COMMANDS:
            return access_cli.run(args, effective(args).settings)
        if args.command == "cycling":
            from stadsdata.apps.cycling import cli as cycling_cli

            return cycling_cli.run(args)
        if args.command == "groundwater":
            from stadsdata.apps.groundwater import cli as groundwater_cli

            return groundwater_cli.run(args)
    except ConfigError as e:
        print(f"stadsdata: invalid configuration: {e}", file=sys.stderr)
        return 2
    except BackupError as e:
        print(f"stadsdata {args.command}: {e}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


def effective(args: argparse.Namespace) -> Effective:
    """The settings of the command line ``args`` over the environment over its --config file."""
    from stadsdata.config import FIELDS, load

    flags = {key: getattr(args, key) for key in FIELDS if hasattr(args, key)}
    return load(args.config, flags)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stadsdata.api.app import create_app
    from stadsdata.api.ops import configure_logging, tune_garbage_collection
    from stadsdata.api.protocol import OneWriteProtocol

    settings = effective(args).settings
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_garbage_collection()
    print(
        f"stadsdata {__version__}: SensorThings API at http://{settings.host}:{settings.port}/v1.1 "
        f"(database {redact(settings.db)})",
        file=sys.stderr,
        flush=True,
    )
    # No access log of uvicorn's own (the application writes one, ``RequestLog``): uvicorn would still build each
    # line's arguments before its level dropped them.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http=OneWriteProtocol,
    )
    return 0


def config_show(args: argparse.Namespace) -> int:
    from stadsdata.config import to_toml

    print(to_toml(effective(args), redact=redact), end="")
    return 0


def backup(args: argparse.Namespace) -> int:
    from stadsdata import backup

    print(backup.backup(effective(args).settings.db, args.out, force=args.force, progress=args.progress))
    return 0


def restore(args: argparse.Namespace) -> int:
    from stadsdata import backup

    print(backup.restore(args.src, effective(args).settings.db, force=args.force))
    return 0


def import_file(args: argparse.Namespace) -> int:
    from stadsdata.ingest import files

    return files.command(effective(args).settings, args)


def dead_letters(args: argparse.Namespace) -> int:
    import asyncio

    from stadsdata.ingest.base import DecodeError
    from stadsdata.ingest.connectors import decoders
    from stadsdata.model.entities import sensing_registry
    from stadsdata.model.values import format_instant
    from stadsdata.service import Service
    from stadsdata.store import open_store
    from stadsdata.store.base import DeadLetter

    settings = effective(args).settings
    action = args.letters_command
    wanted = [args.id] if action == "show" else list(getattr(args, "ids", ()) or ())

    async def every(service: Service) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        after = 0
        while batch := await service.dead_letters(getattr(args, "source", None), after, 1000):
            found += [x for x in batch if not wanted or x.id in wanted]
            after = batch[-1].id
        return found

    async def act(service: Service, letters: list[DeadLetter]) -> int:
        status = 0
        if action == "list":
            for x in letters:
                reason = x.reason if len(x.reason) <= 100 else x.reason[:99] + "…"
                print(f"{x.id}\t{format_instant(x.received)}\t{x.source}\t{len(x.payload)} B\t{reason}")
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        elif action == "show":
            for x in letters:
                print(f"id: {x.id}\nreceived: {format_instant(x.received)}\nsource: {x.source}\npath: {x.path}")
                if x.topic is not None:
                    print(f"topic: {x.topic}")
                print(f"reason: {x.reason}\npayload ({len(x.payload)} bytes):", flush=True)
                sys.stdout.buffer.write(x.payload + b"\n")
                sys.stdout.buffer.flush()
        elif action == "replay":
            known = decoders(settings)
            for x in letters:
                try:
                    delivery = await service.replay(x, known)
                except DecodeError as exc:
                    print(f"{x.id}: still not decoded, kept: {exc}")
                    status = 1
                    continue
                if delivery.duplicate:
                    print(f"{x.id}: replayed before; nothing stored")
                elif delivery.rejected:
                    print(
                        f"{x.id}: {len(delivery.created)} observation(s) stored, {len(delivery.rejected)} refused "
                        "again and kept as a new dead letter"
                    )
                    status = 1
                else:
                    print(f"{x.id}: {len(delivery.created)} observation(s) stored")
        else:
            for x in letters:
                if await service.remove_dead_letter(x.id):
                    print(f"{x.id}: deleted")
        missing = sorted(set(wanted) - {x.id for x in letters})
        if missing:
            print(f"stadsdata dead-letters: no such dead letter: {', '.join(map(str, missing))}", file=sys.stderr)
            status = 1
        return status

    async def run() -> int:
        store = open_store(settings.db, sensing_registry(), synchronous=settings.synchronous)
        try:
            service = Service(store.registry, store)
            return await act(service, await every(service))
        finally:
            await store.close()

    return asyncio.run(run())


def redact(db: str) -> str:
    """A database location fit for printing: the password of a URL masked."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in db:
        return db
    parts = urlsplit(db)
    if parts.password is None:
        return db
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def db_upgrade(args: argparse.Namespace) -> int:
    from stadsdata.model.entities import sensing_registry
    from stadsdata.store import open_store

    settings = effective(args).settings
    store = open_store(settings.db, sensing_registry(), synchronous=settings.synchronous)
    print(f"{redact(settings.db)}: schema at revision {store.schema_revision()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
