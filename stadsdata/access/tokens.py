"""API tokens, grants and projects, in the store's access tables (``store/schema.py``, ``_access_tables``).

A token is ``sdt_`` and 43 random URL-safe characters (256 bits), shown once when it is created; the
store keeps only its SHA-256, which is enough for a secret that long (it cannot be guessed, so it needs
no slow hash), and finds a token by that hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from stadsdata.access.identity import ALL_PROJECTS, Grant, Identity, Role
from stadsdata.errors import BadRequest
from stadsdata.store.base import Tx

PREFIX = "sdt_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(what: str, name: str, allow_all: bool = False) -> str:
    """A subject or project name: letters, digits and ``._:@-``, at most 128 characters."""
    if allow_all and name == ALL_PROJECTS:
        return name
    if not _NAME.match(name):
        raise BadRequest(f"{what} {name!r} is not valid: use letters, digits and . _ : @ - (at most 128)")
    return name


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    subject: str
    created: int
    expires: int | None
    revoked: int | None

    def state(self, now: int) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"


def _t(tx: Tx, name: str) -> Any:
    return tx.metadata.tables[name]


def create_token(tx: Tx, name: str, subject: str, now: int, expires: int | None = None) -> tuple[int, str]:
    """A new token for ``subject``: its id and the secret (which is not stored)."""
    check_name("subject", subject)
    secret = PREFIX + secrets.token_urlsafe(32)
    t = _t(tx, "tokens")
    values = {"name": name, "subject": subject, "secret_hash": hash_secret(secret), "created": now, "expires": expires}
    rows = tx.rows(insert(t).values(values).returning(t.c.id))
    return int(rows[0][0]), secret


def tokens(tx: Tx, subject: str | None = None) -> list[TokenInfo]:
    t = _t(tx, "tokens")
    stmt = select(t.c.id, t.c.name, t.c.subject, t.c.created, t.c.expires, t.c.revoked).order_by(t.c.id)
    if subject is not None:
        stmt = stmt.where(t.c.subject == subject)
    return [TokenInfo(*r) for r in tx.rows(stmt)]


def revoke_token(tx: Tx, token_id: int, now: int) -> bool:
    t = _t(tx, "tokens")
    return tx.execute(update(t).where(t.c.id == token_id, t.c.revoked.is_(None)).values(revoked=now)) > 0


def set_grant(tx: Tx, subject: str, project: str, role: Role, personal: bool) -> None:
    check_name("subject", subject)
    check_name("project", project, allow_all=True)
    g = _t(tx, "grants")
    tx.execute(delete(g).where(g.c.subject == subject, g.c.project == project))
    tx.execute(insert(g).values(subject=subject, project=project, role=role.name.lower(), personal=int(personal)))


def remove_grant(tx: Tx, subject: str, project: str) -> bool:
    g = _t(tx, "grants")
    return tx.execute(delete(g).where(g.c.subject == subject, g.c.project == project)) > 0


def grants(tx: Tx, subject: str | None = None) -> list[tuple[str, Grant]]:
    """(subject, grant) pairs, of one subject or all."""
    g = _t(tx, "grants")
    stmt = select(g.c.subject, g.c.project, g.c.role, g.c.personal).order_by(g.c.subject, g.c.project)
    if subject is not None:
        stmt = stmt.where(g.c.subject == subject)
    return [(r[0], Grant(r[1], Role.parse(r[2]), bool(r[3]))) for r in tx.rows(stmt)]


def create_project(tx: Tx, name: str, description: str, now: int) -> bool:
    """False when a project of that name exists (its description is updated)."""
    check_name("project", name)
    p = _t(tx, "projects")
    if tx.rows(select(p.c.name).where(p.c.name == name)):
        tx.execute(update(p).where(p.c.name == name).values(description=description))
        return False
    tx.execute(insert(p).values(name=name, description=description, created=now))
    return True


def projects(tx: Tx) -> list[tuple[str, str]]:
    p = _t(tx, "projects")
    return [(r[0], r[1]) for r in tx.rows(select(p.c.name, p.c.description).order_by(p.c.name))]


def identity_for_secret(tx: Tx, secret: str, now: int) -> Identity | None:
    """The identity a token acts for; None for an unknown, expired or revoked one."""
    if not secret.startswith(PREFIX):
        return None
    t = _t(tx, "tokens")
    rows = tx.rows(select(t.c.subject, t.c.expires, t.c.revoked).where(t.c.secret_hash == hash_secret(secret)))
    if not rows:
        return None
    subject, expires, revoked = rows[0]
    if revoked is not None or (expires is not None and expires <= now):
        return None
    return identity_for_subject(tx, subject, "token")


def identity_for_subject(tx: Tx, subject: str, via: str, extra: tuple[Grant, ...] = ()) -> Identity:
    """``subject`` with its grants from the store (and ``extra`` ones, e.g. from an OpenID Connect token)."""
    return Identity(subject, tuple(g for _, g in grants(tx, subject)) + extra, via=via)


TOKEN_VARIABLE = "STADSDATA_TOKEN"
"""The environment variable from which the apps' HTTP clients take the token they send (access control on)."""


def client_headers(token: str | None = None) -> dict[str, str]:
    """Headers for a JSON request to a stadsdata server: with ``token``, or else ``$STADSDATA_TOKEN``, as Bearer."""
    import os

    headers = {"Content-Type": "application/json"}
    token = token or os.environ.get(TOKEN_VARIABLE)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def issue(tx: Tx, subject: str, grants: Iterable[tuple[str, Role, bool]] = (), name: str = "") -> str:
    """Give ``subject`` these (project, role, personal) grants and a new token; the token's secret."""
    for project, role, personal in grants:
        set_grant(tx, subject, project, role, personal)
    return create_token(tx, name, subject, 0)[1]
