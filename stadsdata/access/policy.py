"""The access policy: which rows of each entity set an identity may see, and which it may change.

Visibility is decided on Things and Datastreams (and MultiDatastreams), from members of their
``properties`` that the database keeps as columns (``store/schema.py``, ``ACCESS_COLUMNS``):

* ``visibility``: ``public`` (anyone, also anonymous), ``internal`` (anyone with a role in the project),
  ``personal`` (the ``owner`` and whoever has the personal right in the project). Any other value is
  treated as personal: an unknown word never opens data up.
* ``owner``: the subject a personal Thing or Datastream belongs to (a resident's pseudonymous id).
* ``project`` (Things only): the project the Thing and all its data belong to.

Missing members take the configured defaults. Everything else follows from those two entity types,
so that what a visible row refers to is always visible too:

* a Datastream is visible when its Thing is and it passes its own visibility (its project is its Thing's);
* an Observation when its Datastream (or MultiDatastream) is; a HistoricalLocation when its Thing is;
* a Location when one of its Things or HistoricalLocations is; a Sensor or ObservedProperty when one of
  its Datastreams is; a FeatureOfInterest when one of its Observations is. One of those that nothing
  refers to yet is visible to anyone with a role somewhere (it was just created, or is left over).

The restrictions are filter expressions (``query.ast``) that the planner adds to every step of every
path and every ``$expand`` and the compiler to every filter through a relation, so they hold on every
path to data. A row an identity may not see is indistinguishable from a missing one.

What an identity may change: what it may see, in projects where it is at least a writer; a Location,
Sensor, ObservedProperty or FeatureOfInterest only when everything that refers to it is changeable too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from stadsdata.access.identity import ALL_PROJECTS, Identity, Role
from stadsdata.model.entities import EntityType, Relation
from stadsdata.query.ast import BinaryOp, Expr, Hidden, Literal, Related, UnaryOp
from stadsdata.query.plan import Disclosure

_IMPLIED = {
    ("Datastream", "Observations"),
    ("MultiDatastream", "Observations"),
    ("Thing", "Locations"),
    ("Thing", "HistoricalLocations"),
    ("HistoricalLocation", "Locations"),
}

Cond = Expr | bool
"""A condition while it is built: True and False are folded away."""


@dataclass(frozen=True)
class AccessRules:
    """The configuration of access control (from ``Settings``)."""

    default_project: str = "city"
    default_visibility: str = "public"
    min_owners: int = 5
    """Disclosure control: an aggregate over personal data is shown to others only with this many owners."""


def _fold(op: str, parts: tuple[Cond, ...]) -> Cond:
    """``parts`` joined by ``op`` ("and" or "or"), with True and False folded away."""
    absorbing = op == "or"  # True absorbs an "or", False an "and"; the other constant drops out
    if any(p is absorbing for p in parts):
        return absorbing
    exprs = [p for p in parts if not isinstance(p, bool)]
    if not exprs:
        return not absorbing
    out = exprs[0]
    for p in exprs[1:]:
        out = BinaryOp(op, out, p)
    return out


def _or(*parts: Cond) -> Cond:
    return _fold("or", parts)


def _and(*parts: Cond) -> Cond:
    return _fold("and", parts)


def _not(part: Cond) -> Cond:
    if isinstance(part, bool):
        return not part
    return UnaryOp("not", part)


def _eq(column: str, value: str | None) -> Expr:
    return BinaryOp("eq", Hidden(column), Literal(value, "null" if value is None else "string"))


def _rel(relation: str, cond: Cond) -> Cond:
    """A row related through ``relation`` passes ``cond``."""
    if cond is False:
        return False
    return Related(relation, None if cond is True else cond)


@dataclass(eq=False)  # equal only to itself: plans that hold a policy are cached per policy object
class AccessPolicy:
    """The read (``write`` False) or write restrictions of one identity; each entity's is built once."""

    identity: Identity
    rules: AccessRules
    write: bool = False
    _cache: dict[str, Cond] = field(default_factory=dict, repr=False)

    @cached_property
    def unrestricted(self) -> bool:
        """Everything passes (the server itself, or personal rights in every project): no restriction at all."""
        me = self.identity
        return me.system or ALL_PROJECTS in me.projects(Role.WRITER if self.write else Role.READER, personal=True)

    def disclosure(self, entity: EntityType) -> Disclosure | None:
        """Observations of other people's personal Datastreams (and MultiDatastreams), for aggregates: each group
        needs ``min_owners`` distinct owners among them."""
        if self.write or self.unrestricted or entity.name != "Observation":
            return None
        hidden = _or(*(_rel(name, _and(self._personal(), _not(self.condition(name))))
                       for name in ("Datastream", "MultiDatastream")))  # fmt: skip
        personal = _or(*(_rel(name, self._personal()) for name in ("Datastream", "MultiDatastream")))
        if isinstance(hidden, bool) or isinstance(personal, bool):
            return None
        return Disclosure(hidden, personal, self.rules.min_owners, ("Datastream", "MultiDatastream"))

    def _personal(self) -> Cond:
        """A Datastream row that is personal and has an owner (any visibility word but public and internal)."""
        known = [_eq("visibility", w) for w in ("public", "internal")]
        if self.rules.default_visibility != "personal":
            known.append(_eq("visibility", None))
        return _and(_not(_or(*known)), _not(_eq("owner", None)))

    def implied(self, source: EntityType, relation: Relation) -> bool:
        """What a visible row refers to is visible (to one), and so are the rows below a visible one whose
        visibility is that of their parent: a Datastream's Observations, a Thing's Locations and HistoricalLocations,
        a HistoricalLocation's Locations, an Observation's FeatureOfInterest. Not a Thing's Datastreams, nor a
        Sensor's: each has a visibility of its own."""
        return self.unrestricted or not relation.many or (source.name, relation.name) in _IMPLIED

    def restrict(self, entity: EntityType) -> Expr | None:
        cond = self.condition(entity.name)
        if cond is True:
            return None
        if cond is False:  # no row at all: a condition no row meets
            return BinaryOp("eq", Literal(1, "int"), Literal(0, "int"))
        return cond

    def condition(self, name: str) -> Cond:
        if self.unrestricted:
            return True
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = self._build(name)
        return found

    # -- building blocks ---------------------------------------------------------------------------

    def _in_projects(self, projects: frozenset[str]) -> Cond:
        """The Thing row's project is one of ``projects``."""
        if ALL_PROJECTS in projects:
            return True
        parts: list[Cond] = [_eq("project", p) for p in sorted(projects)]
        if self.rules.default_project in projects:
            parts.append(_eq("project", None))
        return _or(*parts)

    def _visibility(self, word: str) -> Cond:
        cond = _eq("visibility", word)
        return _or(cond, _eq("visibility", None)) if self.rules.default_visibility == word else cond

    def _mine(self) -> Cond:
        subject = self.identity.subject
        return False if subject is None else _eq("owner", subject)

    def _readable_projects(self) -> frozenset[str]:
        return self.identity.projects(Role.READER)

    def _personal_projects(self) -> frozenset[str]:
        return self.identity.projects(Role.READER, personal=True)

    def _thing_visible(self) -> Cond:
        return _or(
            self._visibility("public"),
            _and(self._visibility("internal"), self._in_projects(self._readable_projects())),
            self._mine(),
            self._in_projects(self._personal_projects()),
        )

    def _stream_visible(self) -> Cond:
        """A Datastream or MultiDatastream row: its own visibility, its Thing's project and visibility."""
        thing = self._thing_visible()
        return _or(
            _and(self._visibility("public"), _rel("Thing", thing)),
            _and(
                self._visibility("internal"), _rel("Thing", _and(thing, self._in_projects(self._readable_projects())))
            ),
            _and(self._mine(), _rel("Thing", thing)),
            _rel("Thing", _and(thing, self._in_projects(self._personal_projects()))),
        )

    def _any_role(self) -> bool:
        return bool(self._readable_projects())

    def _writable_projects(self) -> frozenset[str]:
        return self.identity.projects(Role.WRITER)

    def _observation(self) -> Cond:
        return _or(
            _rel("Datastream", self.condition("Datastream")), _rel("MultiDatastream", self.condition("MultiDatastream"))
        )

    # -- per entity type ---------------------------------------------------------------------------

    def _build(self, name: str) -> Cond:
        if self.write:
            return self._build_write(name)
        if name == "Thing":
            return self._thing_visible()
        if name in ("Datastream", "MultiDatastream"):
            return self._stream_visible()
        if name == "Observation":
            return _or(
                _rel("Datastream", self.condition("Datastream")),
                _rel("MultiDatastream", self.condition("MultiDatastream")),
            )
        if name == "HistoricalLocation":
            return _rel("Thing", self.condition("Thing"))
        if name == "Location":
            return _or(
                _rel("Things", self.condition("Thing")),
                _rel("HistoricalLocations", self.condition("HistoricalLocation")),
                _and(_not(_rel("Things", True)), _not(_rel("HistoricalLocations", True)), self._any_role()),
            )
        if name in ("Sensor", "ObservedProperty"):
            return _or(
                _rel("Datastreams", self.condition("Datastream")),
                _rel("MultiDatastreams", self.condition("MultiDatastream")),
                _and(_not(_rel("Datastreams", True)), _not(_rel("MultiDatastreams", True)), self._any_role()),
            )
        if name == "FeatureOfInterest":
            return _or(
                _rel("Observations", self.condition("Observation")),
                _and(_not(_rel("Observations", True)), self._any_role()),
            )
        return False  # an entity type this policy does not know: nothing of it is visible

    def _build_write(self, name: str) -> Cond:
        read = AccessPolicy(self.identity, self.rules)
        writable = self._writable_projects()
        if not writable:
            return False
        if name == "Thing":
            return _and(read.condition("Thing"), self._in_projects(writable))
        if name in ("Datastream", "MultiDatastream"):
            return _and(read.condition(name), _rel("Thing", self._in_projects(writable)))
        if name == "Observation":
            return _or(
                _rel("Datastream", self.condition("Datastream")),
                _rel("MultiDatastream", self.condition("MultiDatastream")),
            )
        if name == "HistoricalLocation":
            return _rel("Thing", self.condition("Thing"))
        # Shared entities: changeable only when everything that refers to them is.
        refers = {
            "Location": ("Things",),
            "Sensor": ("Datastreams", "MultiDatastreams"),
            "ObservedProperty": ("Datastreams", "MultiDatastreams"),
            "FeatureOfInterest": ("Observations",),
        }.get(name)
        if refers is None:
            return False
        targets = {"Things": "Thing", "Datastreams": "Datastream", "MultiDatastreams": "MultiDatastream",
                   "Observations": "Observation"}  # fmt: skip
        return _and(read.condition(name), *(_not(_rel(r, _not(self.condition(targets[r])))) for r in refers))
