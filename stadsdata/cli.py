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

  stadsdata serve                      serve the API at http://127.0.0.1:8080/v1.1
  stadsdata serve --db city.db --port 9000
  stadsdata serve --config city.toml   settings from a TOML file (and STADSDATA_* variables)
  stadsdata config show --config city.toml   the settings in force, and where each comes from
  stadsdata db upgrade --db city.db    create or migrate a database without serving
  stadsdata backup --db city.db city-backup.db    a consistent copy, also while serving
  stadsdata restore city-backup.db --db city.db   bring a backup back
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
    return parser


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
    from stadsdata.api.ops import configure_logging

    settings = effective(args).settings
    configure_logging(settings.log_level)
    app = create_app(settings)
    print(
        f"stadsdata {__version__}: SensorThings API at http://{settings.host}:{settings.port}/v1.1 "
        f"(database {redact(settings.db)})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", loop="auto", http="auto")
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
