"""Errors that carry their HTTP status and a stable error code.

Every layer raises these; the API turns them into one JSON body shape in a
single place (``api/errors.py``). The message says what was wrong and, where
it can, how to fix it.
"""

from __future__ import annotations

from typing import Any


class STAError(Exception):
    """Base class: an error that a client can be told about."""

    status: int = 400
    code: str = "bad-request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body


class BadRequest(STAError):
    status = 400
    code = "bad-request"


class QuerySyntaxError(BadRequest):
    """A query option that does not parse or does not type-check.

    ``option`` names the option (``$filter``), ``position`` is the 0-based
    character offset in that option's value.
    """

    code = "invalid-query"

    def __init__(self, message: str, *, option: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{option}{where}: {message}", option=option, position=position)


class ValidationError(BadRequest):
    """A request body that does not match the data model; ``field`` names the place."""

    code = "invalid-entity"


class Unauthorized(STAError):
    """No valid credentials: a token is needed, or the one given is unknown, expired or revoked."""

    status = 401
    code = "unauthorized"


class Forbidden(STAError):
    """The caller may see the entity but not do this to it (an entity it may not see is NotFound)."""

    status = 403
    code = "forbidden"


class NotFound(STAError):
    status = 404
    code = "not-found"


class MethodNotAllowed(STAError):
    status = 405
    code = "method-not-allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(STAError):
    status = 409
    code = "conflict"


class PayloadTooLarge(STAError):
    status = 413
    code = "payload-too-large"


class UnsupportedMediaType(STAError):
    status = 415
    code = "unsupported-media-type"
