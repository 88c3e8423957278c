"""The frozen syntax tree of the SensorThings query language.

Parsing (``filter.py``, ``options.py``) produces these nodes from request
strings; the planner type-checks them against the entity registry; the SQL
stores compile them. Nothing here knows about SQL or about the registry.

Every node carries ``pos``, the 0-based character offset of the node in the
option string it came from, so that later stages can name the position of a
problem in their error messages. ``pos`` takes no part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LiteralType = str
"""One of: ``string int float bool null datetime date time duration geometry``."""


@dataclass(frozen=True)
class Literal:
    """A constant.

    ``value`` by type: string→str, int→int, float→float (also for ``1.5e3``
    and decimals), bool→bool, null→None, datetime→tz-aware ``datetime``
    (naive input is taken as UTC), date→``date``, time→``time``,
    duration→``timedelta``, geometry→the WKT text (``geography'POINT(1 2)'``).
    """

    value: object
    type: LiteralType
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Path:
    """A property path: ``name``, ``Datastream/Thing/name``, ``properties/buurt``.

    Segments are kept as written (case-sensitive); ``@iot.id`` and ``id`` are
    both plain segments here.
    """

    segments: tuple[str, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    """A function call; ``name`` is lower-case (``geo.distance``, ``st_within``)."""

    name: str
    args: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BinaryOp:
    """``op`` is one of ``eq ne gt ge lt le and or add sub mul div mod``."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class UnaryOp:
    """``op`` is ``not`` or ``neg`` (arithmetic minus)."""

    op: str
    operand: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Hidden:
    """A store column that the API does not show: the access columns ``visibility``, ``owner`` and ``project``.

    Only the access policy (``stadsdata/access``) builds these; no request can name one.
    """

    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Related:
    """True when a row related through ``relation`` satisfies ``condition`` (any related row when None).

    Only the access policy builds these: its restrictions say which related rows make a row visible.
    """

    relation: str
    condition: Expr | None = None
    pos: int = field(default=0, compare=False)


Expr = Literal | Path | Call | BinaryOp | UnaryOp | Hidden | Related


@dataclass(frozen=True)
class OrderBy:
    expr: Expr
    descending: bool = False


@dataclass(frozen=True)
class Expand:
    """Expansion of one navigation property, with the options that apply inside it.

    A path such as ``Datastreams/Observations`` is normalised into nested
    ``Expand`` nodes, and repeated relations are merged.
    """

    relation: str
    options: QueryOptions
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class QueryOptions:
    """All system query options of one request, or of one ``$expand`` item.

    ``None`` means the option was not given.
    """

    filter: Expr | None = None
    orderby: tuple[OrderBy, ...] = ()
    top: int | None = None
    skip: int | None = None
    count: bool | None = None
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    result_format: str | None = None
    apply: Apply | None = None


@dataclass(frozen=True)
class Bucket:
    """``bucket(phenomenonTime, duration'PT1H', 'Europe/Amsterdam')``: the start of the time bucket of a value.

    ``step`` is the length of a fixed bucket in microseconds (0 for a calendar
    bucket); ``unit`` is ``day``, ``week``, ``month`` or ``year`` for a calendar
    bucket ("" for a fixed one); ``zone`` is an IANA time zone name.
    """

    path: Path
    step: int
    unit: str
    zone: str
    text: str  # the duration as written, for messages and links
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class GroupKey:
    """One ``groupby`` item: a path (``Datastream/@iot.id``) or a bucket, named ``alias`` in the result."""

    value: Path | Bucket
    alias: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Aggregate:
    """``result with average as mean`` (``path`` None and ``method`` ``count`` for ``$count as n``)."""

    path: Path | None
    method: str
    alias: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Apply:
    """An OData ``$apply``: ``filter(...)`` steps, then ``groupby((keys), aggregate(...))`` or ``aggregate(...)``."""

    filter: Expr | None
    groupby: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
