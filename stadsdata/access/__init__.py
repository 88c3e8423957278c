"""Access control: who may see and change what (docs/access.md).

``Access`` belongs to one running service: it turns a request's credentials into an ``Identity``
and an identity into a ``Caller``, which carries the read policy (for the planner) and the write
policy (for the service's checks). With access control off every caller is ``OPEN``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stadsdata.access.identity import ANONYMOUS, SYSTEM, Grant, Identity, Role
from stadsdata.access.policy import AccessPolicy, AccessRules
from stadsdata.access.tokens import PREFIX, hash_secret, identity_for_secret, identity_for_subject
from stadsdata.errors import Unauthorized
from stadsdata.model.entities import EntityType
from stadsdata.model.values import now_micros
from stadsdata.query.ast import BinaryOp, Expr, Literal, Path
from stadsdata.query.plan import OpenPolicy, Policy, ReadPlan
from stadsdata.settings import Settings
from stadsdata.store.base import Collection, Store, Tx

if TYPE_CHECKING:
    from stadsdata.access.oidc import OidcVerifier

__all__ = [
    "OPEN",
    "TOKEN_CACHE_SECONDS",
    "Access",
    "AccessPolicy",
    "AccessRules",
    "Caller",
    "Grant",
    "Identity",
    "Role",
]

TOKEN_CACHE_SECONDS = 5.0
"""How long a token's identity is remembered: a revoked token or a changed grant takes effect within this time."""


@dataclass(frozen=True, eq=False)
class Caller:
    """Who makes a request, with the policies that apply to it."""

    identity: Identity
    read: Policy
    write: AccessPolicy | None = None
    """None: may change everything (access control off, or the server itself)."""

    @property
    def restricted(self) -> bool:
        return self.write is not None


OPEN = Caller(SYSTEM, OpenPolicy())
"""Access control off, or the server's own work (ingestion connectors): everything is visible and writable."""


def _ids_filter(ids: list[int]) -> Expr:
    out: Expr = BinaryOp("eq", Path(("id",)), Literal(ids[0], "int"))
    for i in ids[1:]:
        out = BinaryOp("or", out, BinaryOp("eq", Path(("id",)), Literal(i, "int")))
    return out


def passing_ids(tx: Tx, entity: EntityType, ids: Iterable[int], policy: Policy) -> set[int]:
    """Those of ``ids`` whose rows of ``entity`` pass ``policy``."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    restriction = policy.restrict(entity)
    for start in range(0, len(wanted), 100):
        chunk = wanted[start : start + 100]
        flt = _ids_filter(chunk)
        if restriction is not None:
            flt = BinaryOp("and", restriction, flt)
        plan = ReadPlan(entity=entity, steps=(), filter=flt, select=("@iot.id",), top=len(chunk) + 1)
        data = tx.read(plan)
        assert isinstance(data, Collection)
        found.update(e.id for e in data.items)
    return found


class Access:
    """Authentication and policies of one service."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.enabled = settings.access == "on"
        self.store = store
        self.rules = AccessRules(settings.default_project, settings.default_visibility, settings.min_owners)
        self.anonymous_allowed = settings.anonymous == "public"
        self._tokens: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self._callers: OrderedDict[Identity, Caller] = OrderedDict()
        self.oidc: OidcVerifier | None = None
        if self.enabled and settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks:
            from stadsdata.access.oidc import OidcVerifier

            self.oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks)

    def caller(self, identity: Identity) -> Caller:
        """The caller for ``identity`` (one object per identity while it is in use, so that plans are reused)."""
        if not self.enabled or identity.system:
            return OPEN
        found = self._callers.get(identity)
        if found is None:
            found = Caller(identity, AccessPolicy(identity, self.rules), AccessPolicy(identity, self.rules, write=True))
            self._callers[identity] = found
            if len(self._callers) > 1024:
                self._callers.popitem(last=False)
        else:
            self._callers.move_to_end(identity)
        return found

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request with this ``Authorization`` header: ``Bearer <token>``, or HTTP Basic with the
        token as the password (for clients that only know Basic). Unauthorized for a token that is not valid,
        and for no token at all when anonymous access is off."""
        if not self.enabled:
            return OPEN
        if not authorization:
            if not self.anonymous_allowed:
                raise Unauthorized("this service needs a token: send it as Authorization: Bearer <token>")
            return self.caller(ANONYMOUS)
        scheme, _, credentials = authorization.strip().partition(" ")
        secret = credentials.strip()
        if scheme.lower() == "basic":
            try:
                secret = base64.b64decode(secret, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("the Basic credentials are not base64 of user:token") from None
        elif scheme.lower() != "bearer":
            raise Unauthorized(f"unknown authorization scheme {scheme!r}: send Authorization: Bearer <token>")
        if self.oidc is not None and not secret.startswith(PREFIX):
            return self.caller(await self.oidc_identity(secret))
        identity = await self.identity(secret)
        if identity is None:
            raise Unauthorized("the token is not valid: it is unknown, expired or revoked")
        return self.caller(identity)

    def audits(self, caller: Caller, method: str) -> bool:
        """Whether the audit log records this request (docs/access.md): made with the personal right somewhere,
        or a change made with a token."""
        me = caller.identity
        if not self.enabled or me.system or me.subject is None:
            return False
        return bool(me.projects(Role.READER, personal=True)) or method not in ("GET", "HEAD", "OPTIONS")

    async def audit(self, caller: Caller, method: str, target: str, status: int) -> None:
        from stadsdata.access.audit import record

        subject = caller.identity.subject
        await self.store.write(lambda tx: record(tx, now_micros(), subject, method, target, status))

    async def oidc_identity(self, token: str) -> Identity:
        """The identity of an OpenID Connect access token: its subject, with the grants of its roles claim and those
        the store holds for the subject."""
        assert self.oidc is not None
        key = "oidc:" + hash_secret(token)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now and cached[1] is not None:
            return cached[1]
        subject, extra = await asyncio.to_thread(self.oidc.verify, token)  # Unauthorized when not valid
        identity = await self.store.run_read(lambda tx: identity_for_subject(tx, subject, "oidc", extra))
        self._remember(key, now, identity)
        return identity

    def _remember(self, key: str, now: float, identity: Identity | None) -> None:
        self._tokens[key] = (now + TOKEN_CACHE_SECONDS, identity)
        if len(self._tokens) > 4096:
            self._tokens.popitem(last=False)

    async def identity(self, secret: str) -> Identity | None:
        key = hash_secret(secret)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        identity = await self.store.run_read(lambda tx: identity_for_secret(tx, secret, now_micros()))
        self._remember(key, now, identity)
        return identity
