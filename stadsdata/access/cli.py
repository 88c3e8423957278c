"""``stadsdata token``, ``grant``, ``project``, ``audit`` and ``erase``: access control from the command line.

They work on the database directly (``--db`` or the configuration), also while the server runs: a new
token works at once, a revoked token or a changed grant within a few seconds (docs/access.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

COMMANDS = ("token", "grant", "project", "audit", "erase")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The subcommands; ``common`` adds the --config and --db options to each."""
    token = sub.add_parser(
        "token",
        help="create, list or revoke API tokens",
        description="API tokens: each acts for a subject (a person, an app, a partner) with the subject's grants. "
        "The token is printed once when it is created; the database keeps only its SHA-256.",
    )
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="a new token for a subject; prints the token")
    create.add_argument("--subject", required=True, help="who the token acts for, e.g. gw-service or resident-1249becb")
    create.add_argument("--name", default="", help="what the token is for (shown in the list)")
    create.add_argument("--expires-days", type=float, metavar="DAYS", help="valid for this many days (default: ever)")
    listing = token_sub.add_parser("list", help="id, subject, name, created, state")
    listing.add_argument("--subject")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)

    grant = sub.add_parser(
        "grant",
        help="give, remove or list roles of subjects in projects",
        description="A subject's role in a project: reader (sees the project's internal data), writer (also "
        "creates, changes and deletes its data), admin (also changes visibility, owner and project). "
        "--personal adds the right to see other people's personal data in the project. Project * is every project.",
    )
    grant_sub = grant.add_subparsers(dest="grant_command", metavar="ACTION", required=True)
    add = grant_sub.add_parser("add", help="give SUBJECT the ROLE in PROJECT (replaces its role there)")
    add.add_argument("subject")
    add.add_argument("project")
    add.add_argument("role", choices=("reader", "writer", "admin"))
    add.add_argument("--personal", action="store_true", help="may also see other people's personal data there")
    remove = grant_sub.add_parser("remove", help="take SUBJECT's role in PROJECT away")
    remove.add_argument("subject")
    remove.add_argument("project")
    grants_list = grant_sub.add_parser("list", help="every grant (of one subject)")
    grants_list.add_argument("--subject")

    project = sub.add_parser(
        "project",
        help="create or list projects",
        description="Projects group Things and their data (a Thing's properties.project) for a partner, a living "
        "lab or another municipality.",
    )
    project_sub = project.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    pcreate = project_sub.add_parser("create", help="create a project (or change its description)")
    pcreate.add_argument("name")
    pcreate.add_argument("--description", default="", help="what the project is")
    plist = project_sub.add_parser("list", help="the projects")

    audit = sub.add_parser(
        "audit",
        help="who read or changed personal data",
        description="The audit log: every request made with the right to see other people's personal data, and "
        "every change made with a token, oldest first.",
    )
    audit.add_argument("--subject", help="only this subject's requests")
    audit.add_argument("--since", metavar="TIME", help="from this ISO 8601 time on (default: the last 7 days)")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many lines (default: 1000)")

    erase = sub.add_parser(
        "erase",
        help="remove a resident's personal data (right to erasure)",
        description="Remove everything a resident owns: their Things, Datastreams and MultiDatastreams "
        "(properties.owner), with their Observations, Locations, HistoricalLocations and the FeaturesOfInterest "
        "that only their Observations used. Prints what was removed. Backups keep the data until they are "
        "rotated out.",
    )
    erase.add_argument("--owner", required=True, help="the owner, as in properties.owner")
    erase.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")

    for parser in (create, listing, revoke, add, remove, grants_list, pcreate, plist, audit, erase):
        common(parser)


def run(args: argparse.Namespace, settings: Any) -> int:
    from stadsdata.errors import STAError

    try:
        return asyncio.run(_run(args, settings))
    except STAError as e:
        print(f"stadsdata {args.command}: {e.message}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Any) -> int:
    from stadsdata.model.entities import sensing_registry
    from stadsdata.store import open_store

    store = open_store(settings.db, sensing_registry(), synchronous=settings.synchronous)
    try:
        if args.command == "erase":
            from stadsdata.access.erase import erase_owner
            from stadsdata.service import Service

            report = await erase_owner(Service(store.registry, store), args.owner, dry_run=args.dry_run)
            for line in report.lines():
                print(line)
            return 0
        result: int = (
            await store.write(lambda tx: _act(args, tx))
            if _writes(args)
            else await store.run_read(lambda tx: _act(args, tx))
        )
        return result
    finally:
        await store.close()


def _writes(args: argparse.Namespace) -> bool:
    action = getattr(args, f"{args.command}_command", None)
    return action in ("create", "revoke", "add", "remove")


def _when(micros: int | None) -> str:
    if micros is None:
        return "-"
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _act(args: argparse.Namespace, tx: Any) -> int:
    from stadsdata.access import tokens as t
    from stadsdata.access.audit import entries
    from stadsdata.access.identity import Role
    from stadsdata.model.values import now_micros

    now = now_micros()
    if args.command == "token":
        if args.token_command == "create":
            expires = None if args.expires_days is None else now + int(args.expires_days * 86_400_000_000)
            token_id, secret = t.create_token(tx, args.name, args.subject, now, expires)
            print(secret)
            print(f"token {token_id} for {args.subject} (shown once; keep it secret)", file=sys.stderr)
            return 0
        if args.token_command == "list":
            for info in t.tokens(tx, args.subject):
                print(f"{info.id}\t{info.subject}\t{info.name or '-'}\t{_when(info.created)}\t{info.state(now)}"
                      f"{'' if info.expires is None else ' until ' + _when(info.expires)}")  # fmt: skip
            return 0
        if t.revoke_token(tx, args.id, now):
            print(f"token {args.id} revoked")
            return 0
        print(f"stadsdata token: no active token {args.id}", file=sys.stderr)
        return 1
    if args.command == "grant":
        if args.grant_command == "add":
            t.set_grant(tx, args.subject, args.project, Role.parse(args.role), args.personal)
            print(f"{args.subject}: {args.role} in {args.project}{' with the personal right' if args.personal else ''}")
            return 0
        if args.grant_command == "remove":
            if t.remove_grant(tx, args.subject, args.project):
                print(f"{args.subject}: no role in {args.project} any more")
                return 0
            print(f"stadsdata grant: {args.subject} has no role in {args.project}", file=sys.stderr)
            return 1
        for subject, g in t.grants(tx, args.subject):
            print("\t".join([subject, g.project, g.role.name.lower()] + (["personal"] if g.personal else [])))
        return 0
    if args.command == "project":
        if args.project_command == "create":
            new = t.create_project(tx, args.name, args.description, now)
            print(f"project {args.name} {'created' if new else 'updated'}")
            return 0
        for name, description in t.projects(tx):
            print(f"{name}\t{description}")
        return 0
    assert args.command == "audit"
    since = now - int(timedelta(days=7) / timedelta(microseconds=1))
    if args.since:
        try:
            moment = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            print(f"stadsdata audit: --since {args.since!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        since = int(moment.timestamp() * 1_000_000)
    for e in entries(tx, since=since, subject=args.subject, limit=args.limit):
        print(f"{_when(e.time)}\t{e.subject or 'anonymous'}\t{e.action}\t{e.status}\t{e.target}")
    return 0
