"""The audit log: who read or changed personal data, and how (the ``audit`` table).

Recorded (with access control on): every request made with the right to see other people's personal
data (a grant with ``personal``), and every change (POST, PATCH, PUT, DELETE) made with a token; each
with the time, the subject, the method and path with its query, and the status of the answer. Admins of
every project read it with ``GET /audit`` or ``stadsdata audit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from stadsdata.store.base import Tx

MAX_TARGET = 2000
"""Characters of the path and query kept per entry."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: int  # microseconds since 1970 UTC
    subject: str | None
    action: str
    target: str
    status: int

    def to_json(self) -> dict[str, Any]:
        from stadsdata.model.values import format_instant

        return {"id": self.id, "time": format_instant(self.time), "subject": self.subject, "action": self.action,
                "target": self.target, "status": self.status}  # fmt: skip


def record(tx: Tx, time: int, subject: str | None, action: str, target: str, status: int) -> None:
    table = tx.metadata.tables["audit"]
    values = {"time": time, "subject": subject, "action": action, "target": target[:MAX_TARGET], "status": status}
    tx.execute(insert(table).values(values))


def entries(tx: Tx, since: int = 0, subject: str | None = None, limit: int = 1000, after: int = 0) -> list[AuditEntry]:
    """The entries from ``since`` on (with ids above ``after``), oldest first."""
    table = tx.metadata.tables["audit"]
    stmt = select(*(table.c[n] for n in ("id", "time", "subject", "action", "target", "status")))
    stmt = stmt.where(table.c.time >= since, table.c.id > after)
    if subject is not None:
        stmt = stmt.where(table.c.subject == subject)
    return [AuditEntry(*row) for row in tx.rows(stmt.order_by(table.c.id).limit(limit))]


class AuditLog:
    """An ASGI middleware: records the requests the audit covers, with their status, once they are answered."""

    def __init__(self, app: Any, access: Any) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            caller = scope.get("state", {}).get("caller")
            if caller is not None and self.access.audits(caller, scope["method"]):
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope["path"] + (f"?{query}" if query else "")
                await self.access.audit(caller, scope["method"], target, status)
