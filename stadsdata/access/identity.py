"""Who is asking: an identity (a subject and its roles per project), as a token or OpenID Connect resolves it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

ALL_PROJECTS = "*"
"""A grant on this project holds in every project (city-wide staff)."""


class Role(IntEnum):
    """What a subject may do in a project; each role includes the ones below it."""

    READER = 1
    WRITER = 2  # create, update and delete Observations and entities
    ADMIN = 3  # also change who may see what: visibility, owner, project

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use reader, writer or admin") from None


VISIBILITIES = ("public", "internal", "personal")


@dataclass(frozen=True)
class Grant:
    project: str
    role: Role
    personal: bool = False
    """May read (and, with the role, change) other people's personal data in the project."""


@dataclass(frozen=True)
class Identity:
    """A caller: ``subject`` None is anonymous; ``system`` is the server itself (connectors, apps run in-process),
    to which no restriction applies."""

    subject: str | None
    grants: tuple[Grant, ...] = ()
    system: bool = False
    via: str = "anonymous"
    """How the caller proved who it is: anonymous, token, oidc or system."""

    def projects(self, role: Role = Role.READER, personal: bool = False) -> frozenset[str]:
        """The projects in which the caller has at least ``role`` (and the personal right, when asked)."""
        return frozenset(g.project for g in self.grants if g.role >= role and (g.personal or not personal))

    def role(self, project: str) -> Role | None:
        roles = [g.role for g in self.grants if g.project in (project, ALL_PROJECTS)]
        return max(roles) if roles else None

    def describe(self) -> str:
        if self.system:
            return "the server"
        return self.subject or "anonymous"


ANONYMOUS = Identity(None)
SYSTEM = Identity("system", system=True, via="system")
