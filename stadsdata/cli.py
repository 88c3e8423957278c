"""The ``stadsdata`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stadsdata import __version__
from stadsdata.settings import Settings

DESCRIPTION = """\
stadsdata: the city's own data platform. An OGC SensorThings API 1.1 server
on an embedded SQLite database; no other server needed.

  stadsdata serve                      serve the API at http://127.0.0.1:8080/v1.1
  stadsdata serve --db city.db --port 9000
  stadsdata db upgrade --db city.db    create or migrate a database without serving
"""


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=Settings.db,
        metavar="PATH",
        help="the database: a SQLite file, or a PostgreSQL URL postgresql://user:password@host:port/name "
        "(PostGIS installed); created or migrated when needed (default: %(default)s)",
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
    )
    _add_db(serve)
    serve.add_argument("--host", default=Settings.host, help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=Settings.port, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="public URL of the service root used in links, e.g. https://data.enschede.nl/v1.1 "
        "(default: derived from each request)",
    )
    serve.add_argument(
        "--max-top",
        type=int,
        default=Settings.max_top,
        metavar="N",
        help="largest page size a client may ask for with $top (default: %(default)s)",
    )
    serve.add_argument(
        "--estimated-count-above",
        type=int,
        default=Settings.estimated_count_above,
        metavar="N",
        help="for requests with 'Prefer: count=estimated', answer $count with the database's estimate "
        "when that is above N rows (PostgreSQL; default: %(default)s)",
    )
    serve.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default=Settings.synchronous,
        help="FULL: a committed write survives power loss; NORMAL: faster, survives process crashes "
        "but not power loss (default: %(default)s)",
    )

    db = sub.add_parser("db", help="manage the database schema", description="Manage the database schema.")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    upgrade = db_sub.add_parser(
        "upgrade",
        help="create the database or migrate it to the newest schema",
        description="Create the database or migrate it to the newest schema. `serve` does this too on start.",
    )
    _add_db(upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "db":
        if args.db_command == "upgrade":
            return db_upgrade(args)
        parser.parse_args(["db", "--help"])
    parser.print_help()
    return 2


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stadsdata.api.app import create_app

    settings = Settings(
        db=args.db,
        host=args.host,
        port=args.port,
        base_url=args.base_url,
        max_top=args.max_top,
        estimated_count_above=args.estimated_count_above,
        synchronous=args.synchronous,
    )
    app = create_app(settings)
    print(
        f"stadsdata {__version__}: SensorThings API at http://{settings.host}:{settings.port}/v1.1 "
        f"(database {redact(settings.db)})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", loop="auto", http="auto")
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

    store = open_store(args.db, sensing_registry())
    print(f"{redact(args.db)}: schema at revision {store.schema_revision()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
