"""Parse ``$apply`` (the OData Aggregation extension, as far as stadsdata computes it).

::

    filter(phenomenonTime ge 2026-01-01T00:00:00Z)
      /groupby((bucket(phenomenonTime,duration'PT1H','Europe/Amsterdam') as time, Datastream/@iot.id),
               aggregate(result with average as mean, result with max as max, $count as count))

Steps are separated by ``/``: any number of ``filter(expr)`` (the ``$filter``
language; several are combined with ``and``), then one ``groupby((keys))``,
``groupby((keys), aggregate(...))`` or ``aggregate(...)``, which must come last.

Here only the syntax, the durations and the time zones are checked; whether the
paths name something aggregatable is the planner's question (``plan.py``).
Positions are offsets into the whole ``$apply`` value.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Final
from zoneinfo import available_timezones

from lark import Lark, Token, v_args

from stadsdata.query.ast import Aggregate, Apply, BinaryOp, Bucket, Expr, GroupKey, Path
from stadsdata.query.filter import ExprBuilder, ParseFailure, at, check_depth, load_grammar, run_parser

__all__ = ["AGGREGATION_METHODS", "CALENDAR_UNITS", "parse_apply"]

AGGREGATION_METHODS: Final = ("average", "min", "max", "sum")
"""The OData aggregation methods computed here (``$count as n`` counts the rows)."""

CALENDAR_UNITS: Final = {"D": "day", "W": "week", "M": "month", "Y": "year"}
"""Calendar bucket durations (``P1D`` …) and their unit."""

_DAY_US: Final = 86_400_000_000
_ALIAS_RE: Final = re.compile(r"[^\W\d]\w*")
_FIXED_RE: Final = re.compile(
    r"PT(?:([0-9]{1,9})H)?(?:([0-9]{1,9})M)?(?:([0-9]{1,9})(?:\.([0-9]{1,6}))?S)?", re.IGNORECASE
)
_CALENDAR_RE: Final = re.compile(r"P1([DWMY])", re.IGNORECASE)
_DURATION_HINT: Final = (
    "use a fixed length that divides a day (PT1M, PT15M, PT1H, PT6H …) or a calendar unit (P1D, P1W, P1M, P1Y)"
)

_Step = tuple[str, Any, int]
"""One transformation: its kind (filter, groupby, aggregate), its content and its position."""


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def bucket_duration(text: str, pos: int) -> tuple[int, str]:
    """(step in microseconds, "") for a fixed duration, (0, unit) for a calendar one."""
    m = _CALENDAR_RE.fullmatch(text)
    if m is not None:
        return 0, CALENDAR_UNITS[m.group(1).upper()]
    m = _FIXED_RE.fullmatch(text)
    if m is None or not any(m.groups()):
        raise ParseFailure(f"bucket duration {text!r} is not supported; {_DURATION_HINT}", pos)
    hours, minutes, seconds = (int(g or 0) for g in m.groups()[:3])
    step = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + int((m.group(4) or "").ljust(6, "0"))
    if step <= 0 or step > _DAY_US or _DAY_US % step:
        raise ParseFailure(f"bucket duration {text!r} does not divide a day; {_DURATION_HINT}", pos)
    return step, ""


def _alias(token: Token) -> str:
    if not _ALIAS_RE.fullmatch(token.value):
        raise ParseFailure(f"{token.value!r} is not a name; a name after 'as' is letters, digits and _", at(token))
    return str(token.value)


@v_args(inline=True)
class ApplyBuilder(ExprBuilder):
    """Adds the ``$apply`` rules to the expression builder."""

    def apply(self, *steps: _Step) -> Apply:
        filters: list[Expr] = []
        final: _Step | None = None
        for kind, content, pos in steps:
            if final is not None:
                raise ParseFailure(f"nothing may follow {final[0]}(...); put filter(...) steps before it", pos)
            if kind == "filter":
                filters.append(content)
            else:
                final = (kind, content, pos)
        if final is None:
            raise ParseFailure(
                "$apply needs a groupby((...), aggregate(...)) or aggregate(...) step; for filter(...) alone use"
                " $filter",
                steps[-1][2],
            )
        keys, aggregates = final[1]
        names = [k.alias for k in keys] + [a.alias for a in aggregates]
        for i, item in enumerate((*keys, *aggregates)):
            if names[i] in names[:i]:
                raise ParseFailure(f"the name {names[i]!r} is given twice; each result needs its own name", item.pos)
        combined: Expr | None = None
        for expr in filters:
            combined = expr if combined is None else BinaryOp("and", combined, expr, pos=expr.pos)
        return Apply(combined, tuple(keys), tuple(aggregates))

    def apply_filter(self, name: Token, expr: Expr) -> _Step:
        return ("filter", expr, at(name))

    def apply_groupby(self, name: Token, *items: Any) -> _Step:
        aggregates: tuple[Aggregate, ...] = ()
        if items and isinstance(items[-1], tuple) and items[-1][0] == "aggregate":
            aggregates = items[-1][1][1]
            items = items[:-1]
        return ("groupby", (list(items), aggregates), at(name))

    def aggregate(self, name: Token, *items: Aggregate) -> _Step:
        return ("aggregate", ((), items), at(name))

    def group_path(self, path: Token, *alias: Token) -> GroupKey:
        name = _alias(alias[1]) if alias else str(path.value)
        return GroupKey(Path(tuple(path.value.split("/")), pos=at(path)), name, pos=at(path))

    def group_bucket(self, name: Token, path: Token, duration: Token, *rest: Token) -> GroupKey:
        zone_token = rest[0] if rest and rest[0].type == "STRING" else None
        alias = rest[-1] if rest and rest[-1].type == "PATH" else None
        text = duration.value[duration.value.index("'") + 1 : -1]
        step, unit = bucket_duration(text, at(duration))
        zone = "UTC"
        if zone_token is not None:
            zone = zone_token.value[1:-1].replace("''", "'")
            if zone not in _zones():
                raise ParseFailure(
                    f"unknown time zone {zone[:60]!r}; use an IANA name such as 'UTC' or 'Europe/Amsterdam'",
                    at(zone_token),
                )
        if alias is None:
            raise ParseFailure("name the bucket: bucket(...) as time", at(name))
        target = Path(tuple(path.value.split("/")), pos=at(path))
        return GroupKey(Bucket(target, step, unit, zone, text, pos=at(name)), _alias(alias), pos=at(name))

    def aggregate_with(self, path: Token, _with: Token, method: Token, _as: Token, alias: Token) -> Aggregate:
        name = method.value
        if name not in AGGREGATION_METHODS:
            hint = "; countdistinct is not supported" if name == "countdistinct" else ""
            raise ParseFailure(
                f"unknown aggregation method {name[:40]!r}; use {', '.join(AGGREGATION_METHODS)}{hint}", at(method)
            )
        return Aggregate(Path(tuple(path.value.split("/")), pos=at(path)), name, _alias(alias), pos=at(path))

    def aggregate_count(self, count: Token, _as: Token, alias: Token) -> Aggregate:
        return Aggregate(None, "count", _alias(alias), pos=at(count))


@cache
def _apply_parser() -> Lark:
    return Lark(load_grammar(), parser="lalr", lexer="contextual", start="apply", transformer=ApplyBuilder())


def parse_apply(text: str, option: str = "$apply") -> Apply:
    """Parse a ``$apply`` value into an ``Apply``, or raise ``QuerySyntaxError`` naming the position."""
    result: Apply = run_parser(_apply_parser(), text, "apply", option)
    if result.filter is not None:
        check_depth(result.filter, option)
    return result
