"""Parse the system query options of a request into ``QueryOptions``.

``$filter``, ``$orderby``, ``$select`` and ``$expand`` go through the lark
grammar in ``grammar.lark``; ``$expand`` items carry their own options
(``Datastreams($filter=result gt 3;$top=1;$expand=Thing)``), parsed by the
same grammar to any depth, so a ``;`` or ``)`` inside a string literal or a
nested parenthesis never splits an item. ``$top``, ``$skip``, ``$count`` and
``$resultFormat`` are single values and are checked directly.

Positions in errors and in the nodes of a nested option are offsets into the
whole value of the top-level option they were written in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from functools import cache
from typing import Any, Final

from lark import Lark, Token, v_args

from stadsdata.errors import QuerySyntaxError
from stadsdata.query.apply import parse_apply
from stadsdata.query.ast import Expand, Expr, OrderBy, QueryOptions
from stadsdata.query.filter import (
    OPTION_NAMES,
    ExprBuilder,
    ParseFailure,
    at,
    check_depth,
    load_grammar,
    parse_filter,
)
from stadsdata.query.filter import run_parser as _run_parser

__all__ = ["MAX_EXPAND_DEPTH", "parse_expand", "parse_options", "parse_orderby", "parse_select"]

MAX_EXPAND_DEPTH: Final = 16
"""Most levels of nested ``$expand`` accepted; ``A/B/C`` counts three."""

_NON_NEGATIVE_RE: Final = re.compile(r"[ \t]*([0-9]+)[ \t]*")
_INT_MAX: Final = 2**63 - 1

# The option that fills each QueryOptions field, for error messages.
_OPTION_OF_FIELD: Final = {
    "filter": "$filter",
    "orderby": "$orderby",
    "top": "$top",
    "skip": "$skip",
    "count": "$count",
    "select": "$select",
    "expand": "$expand",
    "result_format": "$resultFormat",
    "apply": "$apply",
}
_TOP_LEVEL_OPTIONS: Final = (*OPTION_NAMES, "$apply")  # $apply is not an option inside $expand

_Option = tuple[str, Any, Token]
"""One option inside ``$expand(...)``: field name, value, and the option-name token."""


def _expand_depth(expands: Iterable[Expand]) -> int:
    """Levels of nesting below and including ``expands``, counted without recursion."""
    deepest = 0
    stack = [(e, 1) for e in expands]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((sub, depth + 1) for sub in item.options.expand)
    return deepest


def _is_unset(value: object) -> bool:
    return value is None or value == ()


def _merge(first: Expand, second: Expand) -> Expand:
    """Combine two items that expand the same relation at the same level."""
    changes: dict[str, Any] = {}
    for f in fields(QueryOptions):
        if f.name == "expand":
            continue
        mine, theirs = getattr(first.options, f.name), getattr(second.options, f.name)
        if _is_unset(theirs) or mine == theirs:
            continue
        if not _is_unset(mine):
            raise ParseFailure(
                f"{second.relation} is expanded twice with different {_OPTION_OF_FIELD[f.name]};"
                " give the options of one relation in one item",
                second.pos,
            )
        changes[f.name] = theirs
    # Recursion is bounded by MAX_EXPAND_DEPTH, checked before anything is merged.
    changes["expand"] = _merge_all(first.options.expand + second.options.expand)
    return replace(first, options=replace(first.options, **changes))


def _merge_all(items: Iterable[Expand]) -> tuple[Expand, ...]:
    merged: dict[str, Expand] = {}
    for item in items:
        seen = merged.get(item.relation)
        merged[item.relation] = item if seen is None else _merge(seen, item)
    return tuple(merged.values())


@v_args(inline=True)
class OptionsBuilder(ExprBuilder):
    """Adds the ``$orderby``, ``$select`` and ``$expand`` rules to the expression builder."""

    def orderby(self, *items: OrderBy) -> tuple[OrderBy, ...]:
        return items

    def orderby_item(self, expr: Expr, direction: Token | None = None) -> OrderBy:
        return OrderBy(expr, descending=direction is not None and direction.type == "DESC")

    def select(self, *names: Token) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.value for n in names))  # drop repeats, keep the order

    def expand(self, *items: Expand) -> tuple[Expand, ...]:
        return _merge_all(items)

    def expand_item(self, path: Token, *options: _Option) -> Expand:
        segments = path.value.split("/")
        offsets = [at(path)]
        for seg in segments[:-1]:
            offsets.append(offsets[-1] + len(seg) + 1)
        for seg, pos in zip(segments, offsets, strict=True):
            if seg.startswith("@") or seg[0].isdigit():
                raise ParseFailure(f"'{seg}' is not a navigation property name", pos)
        values: dict[str, Any] = {}
        for field_name, value, token in options:
            if field_name in values:
                raise ParseFailure(f"{token.value} is given twice for {segments[-1]}", at(token))
            values[field_name] = value
        inner = QueryOptions(**values)
        if len(segments) + _expand_depth(inner.expand) > MAX_EXPAND_DEPTH:
            raise ParseFailure(f"$expand is nested too deeply (more than {MAX_EXPAND_DEPTH} levels)", at(path))
        # Datastreams/Observations(opts) is Datastreams($expand=Observations(opts)).
        item = Expand(segments[-1], inner, pos=offsets[-1])
        for seg, pos in zip(reversed(segments[:-1]), reversed(offsets[:-1]), strict=True):
            item = Expand(seg, QueryOptions(expand=(item,)), pos=pos)
        return item

    def opt_filter(self, name: Token, expr: Expr) -> _Option:
        return ("filter", expr, name)

    def opt_orderby(self, name: Token, items: tuple[OrderBy, ...]) -> _Option:
        return ("orderby", items, name)

    def opt_top(self, name: Token, value: Token) -> _Option:
        return ("top", _bounded(value.value, at(value)), name)

    def opt_skip(self, name: Token, value: Token) -> _Option:
        return ("skip", _bounded(value.value, at(value)), name)

    def opt_count(self, name: Token, value: Token) -> _Option:
        return ("count", value.type == "TRUE", name)

    def opt_select(self, name: Token, names: tuple[str, ...]) -> _Option:
        return ("select", names, name)

    def opt_expand(self, name: Token, items: tuple[Expand, ...]) -> _Option:
        return ("expand", items, name)

    def opt_result_format(self, name: Token, value: Token) -> _Option:
        return ("result_format", value.value, name)


def _bounded(digits: str, pos: int) -> int:
    # Guarded before int(): int() refuses over 4300 digits with a ValueError.
    significant = digits.lstrip("0") or "0"
    if len(significant) > 19 or int(significant) > _INT_MAX:
        raise ParseFailure(f"{digits[:25]} is too large", pos)
    return int(significant)


@cache
def _options_parser() -> Lark:
    # Built on first use, like the filter parser; "filter" is a start rule only
    # so that lark does not report it as unused.
    return Lark(
        load_grammar(),
        parser="lalr",
        lexer="contextual",
        start=["orderby", "select", "expand", "filter"],
        transformer=OptionsBuilder(),
    )


def _check_expressions(options: QueryOptions, option: str) -> None:
    """Apply the expression depth limit to every filter and order in ``options`` and below."""
    stack = [options]
    while stack:
        current = stack.pop()
        if current.filter is not None:
            check_depth(current.filter, option)
        for ob in current.orderby:
            check_depth(ob.expr, option)
        stack.extend(e.options for e in current.expand)


def parse_orderby(text: str, option: str = "$orderby") -> tuple[OrderBy, ...]:
    """Parse ``expr [asc|desc], ...``; any filter expression may be ordered by."""
    items: tuple[OrderBy, ...] = _run_parser(_options_parser(), text, "orderby", option)
    _check_expressions(QueryOptions(orderby=items), option)
    return items


def parse_select(text: str, option: str = "$select") -> tuple[str, ...]:
    """Parse a comma-separated list of property or navigation names (``a/b`` paths kept as one string)."""
    names: tuple[str, ...] = _run_parser(_options_parser(), text, "select", option)
    return names


def parse_expand(text: str, option: str = "$expand") -> tuple[Expand, ...]:
    """Parse ``$expand`` into merged, nested ``Expand`` nodes."""
    items: tuple[Expand, ...] = _run_parser(_options_parser(), text, "expand", option)
    _check_expressions(QueryOptions(expand=items), option)
    return items


def _non_negative(text: str, option: str) -> int:
    m = _NON_NEGATIVE_RE.fullmatch(text)
    if m is None:
        raise QuerySyntaxError(f"expected a non-negative integer, found {text[:40]!r}", option=option, position=0)
    try:
        return _bounded(m.group(1), m.start(1))
    except ParseFailure as exc:
        raise QuerySyntaxError(exc.message, option=option, position=exc.pos) from None


def _boolean(text: str, option: str) -> bool:
    value = text.strip(" \t")
    if value not in ("true", "false"):
        raise QuerySyntaxError(f"expected true or false, found {text[:40]!r}", option=option, position=0)
    return value == "true"


def parse_options(params: Mapping[str, str]) -> QueryOptions:
    """Parse the system query options among ``params`` (URL-decoded query parameters).

    Keys that do not start with ``$`` belong to the caller and are ignored;
    an unknown ``$`` option is an error.
    """
    values: dict[str, Any] = {}
    for key, text in params.items():
        if not key.startswith("$"):
            continue
        if key == "$filter":
            values["filter"] = parse_filter(text, key)
        elif key == "$orderby":
            values["orderby"] = parse_orderby(text, key)
        elif key in ("$top", "$skip"):
            values[key[1:]] = _non_negative(text, key)
        elif key == "$count":
            values["count"] = _boolean(text, key)
        elif key == "$select":
            values["select"] = parse_select(text, key)
        elif key == "$expand":
            values["expand"] = parse_expand(text, key)
        elif key == "$resultFormat":
            values["result_format"] = text
        elif key == "$apply":
            values["apply"] = parse_apply(text, key)
        else:
            close = difflib.get_close_matches(key, _TOP_LEVEL_OPTIONS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(_TOP_LEVEL_OPTIONS)
            raise QuerySyntaxError(f"unknown query option {key[:40]!r}{hint} (known: {known})", option=key[:40])
    return QueryOptions(**values)
