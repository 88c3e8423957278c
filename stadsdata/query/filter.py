"""Parse ``$filter`` expressions into the syntax tree of ``ast.py``.

The grammar lives in ``grammar.lark`` and is shared with ``options.py``
(``$orderby`` items and the filters nested in ``$expand`` are expressions
too). The LALR parser calls the builder's callbacks while it reduces, so no
lark tree is built and nothing recurses, however deep the input nests; the
depth of the result is checked afterwards, without recursion, so that the
recursive stages after this one cannot overflow the stack.

Nothing here knows entity types: ``Path`` segments are kept as written, and
whether ``name gt 3`` makes sense is the type checker's question.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path as _FilePath
from typing import Any, Final

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from stadsdata.errors import QuerySyntaxError
from stadsdata.query.ast import BinaryOp, Call, Expr, Literal, Path, UnaryOp

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "parse_expression", "parse_filter"]

MAX_LENGTH: Final = 16_384
"""Longest option value accepted, in characters."""

MAX_DEPTH: Final = 200
"""Deepest expression tree accepted; ``a or b or c ...`` nests one level per term."""

FUNCTIONS: Final[dict[str, tuple[int, ...]]] = {
    **dict.fromkeys(("substringof", "endswith", "startswith", "indexof", "concat"), (2,)),
    "substring": (2, 3),
    **dict.fromkeys(("length", "tolower", "toupper", "trim"), (1,)),
    **dict.fromkeys(
        ("year", "month", "day", "hour", "minute", "second", "fractionalseconds", "date", "time", "totaloffsetminutes"),
        (1,),
    ),
    **dict.fromkeys(("now", "mindatetime", "maxdatetime"), (0,)),
    **dict.fromkeys(("round", "floor", "ceiling"), (1,)),
    "geo.distance": (2,),
    "geo.length": (1,),
    "geo.intersects": (2,),
    **dict.fromkeys(
        (
            "st_equals",
            "st_disjoint",
            "st_touches",
            "st_within",
            "st_overlaps",
            "st_crosses",
            "st_intersects",
            "st_contains",
        ),
        (2,),
    ),
    "st_relate": (3,),
    **dict.fromkeys(("before", "after", "meets", "during", "overlaps", "starts", "finishes"), (2,)),
}
"""The SensorThings API 1.1 functions (lower-case) and the argument counts they take."""

_INT_MAX: Final = 2**63 - 1
_UTC: Final = UTC

_DATETIME_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))?"
)
_TIME_RE: Final = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?")
_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_DURATION_RE: Final = re.compile(
    rf"(-)?P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:(T)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?",
    re.IGNORECASE,
)
_WKT_RE: Final = re.compile(
    r"(?:SRID=[0-9]+;)?\s*(?:POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|MULTIPOLYGON"
    r"|GEOMETRYCOLLECTION)\s*(?:ZM|Z|M)?\s*(?:\(|EMPTY\s*$)",
    re.IGNORECASE,
)
# Strings (possibly unterminated) and parentheses: enough to pair up the
# parentheses when an error message wants to point at an unbalanced one.
_PAREN_SCAN_RE: Final = re.compile(r"'(?:[^']|'')*'?|[()]")
_TZ_PLUS_AS_SPACE_RE: Final = re.compile(r"[Tt][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?[ ]+$")


class ParseFailure(Exception):
    """Raised by the builder callbacks; turned into a ``QuerySyntaxError`` by ``run_parser``."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


# ------------------------------------------------------------------ literals


def at(token: Token) -> int:
    """Where ``token`` starts; lark types the position as optional, but its lexer always sets it."""
    return token.start_pos or 0


def _int(token: Token) -> int:
    # Checked before int() because int() refuses strings over 4300 digits
    # with a ValueError, and an int64 is what every store can hold.
    digits = token.value.lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > _INT_MAX:
        raise ParseFailure(f"integer {_shorten(token.value)} is too large (largest is {_INT_MAX})", at(token))
    return int(digits)


def _float(token: Token) -> float:
    value = float(token.value)
    if value in (float("inf"), float("-inf")):
        raise ParseFailure(f"number {_shorten(token.value)} is too large", at(token))
    return value


def _microseconds(fraction: str | None) -> int:
    # Digits past the sixth are truncated: Python datetimes stop at microseconds.
    return int((fraction or "").ljust(6, "0")[:6])


def _datetime(token: Token) -> datetime:
    m = _DATETIME_RE.fullmatch(token.value)
    assert m is not None  # the terminal and this pattern are the same
    y, mo, d, h, mi, s, frac, sign, tzh, tzm = m.groups()
    try:
        tz = _UTC
        if sign is not None:
            offset = timedelta(hours=int(tzh), minutes=int(tzm))
            tz = timezone(-offset if sign == "-" else offset)
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _microseconds(frac), tzinfo=tz)
    except ValueError as exc:
        raise ParseFailure(f"invalid date-time {token.value!r}: {exc}", at(token)) from None


def _date(token: Token) -> date:
    y, mo, d = token.value.split("-")
    try:
        return date(int(y), int(mo), int(d))
    except ValueError as exc:
        raise ParseFailure(f"invalid date {token.value!r}: {exc}", at(token)) from None


def _time(token: Token) -> time:
    m = _TIME_RE.fullmatch(token.value)
    assert m is not None
    h, mi, s, frac = m.groups()
    try:
        return time(int(h), int(mi), int(s or 0), _microseconds(frac))
    except ValueError as exc:
        raise ParseFailure(f"invalid time {token.value!r}: {exc}", at(token)) from None


def _quoted(token: Token) -> str:
    """The text between the quotes of ``prefix'...'``."""
    text: str = token.value
    return text[text.index("'") + 1 : -1]


def _duration(token: Token) -> timedelta:
    text = _quoted(token)
    m = _DURATION_RE.fullmatch(text)
    parts = m.groups() if m else ()
    if m is None or not any(parts[1:5] + parts[6:]) or (parts[5] and not any(parts[6:])):
        raise ParseFailure(
            f"invalid duration {text!r}: expected ISO 8601 like 'P1DT2H30M', 'PT15M' or 'P2W'", at(token)
        )
    sign, years, months, weeks, days, _, hours, minutes, seconds = parts
    if years or months:
        raise ParseFailure(
            f"invalid duration {text!r}: years and months have no fixed length; use weeks, days, hours,"
            " minutes and seconds (for example P30D)",
            at(token),
        )
    # Decimal keeps fractional seconds exact; timedelta(seconds=0.1) would not.
    total = sum(
        Decimal(n or 0) * factor
        for n, factor in ((weeks, 604_800), (days, 86_400), (hours, 3_600), (minutes, 60), (seconds, 1))
    )
    try:
        result = timedelta(microseconds=int(total * 1_000_000))
    except (OverflowError, ValueError):
        raise ParseFailure(f"duration {text!r} is too long", at(token)) from None
    return -result if sign else result


def _geometry(token: Token) -> str:
    text = _quoted(token).strip()
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            break
    if not _WKT_RE.match(text) or depth != 0:
        raise ParseFailure(
            f"invalid geometry {_shorten(text)!r}: expected well-known text such as 'POINT(7.0 52.2)' or"
            " 'POLYGON((...))' with balanced parentheses",
            at(token),
        )
    return text


# ------------------------------------------------------------------ builder


@v_args(inline=True)
class ExprBuilder(Transformer[Token, Any]):
    """Builds ``ast.py`` nodes while the LALR parser reduces; shared with ``options.py``."""

    def filter(self, expr: Expr) -> Expr:
        return expr

    def binop(self, left: Expr, op: Token, right: Expr) -> BinaryOp:
        return BinaryOp(op.value, left, right, pos=at(op))

    def not_op(self, op: Token, operand: Expr) -> UnaryOp:
        return UnaryOp("not", operand, pos=at(op))

    def neg_op(self, op: Token, operand: Expr) -> Expr:
        # OData makes the sign part of a number literal, so -5 is Literal(-5)
        # rather than a negation the stores would have to fold.
        if isinstance(operand, Literal) and operand.type in ("int", "float"):
            assert isinstance(operand.value, (int, float))
            return Literal(-operand.value, operand.type, pos=at(op))
        return UnaryOp("neg", operand, pos=at(op))

    def path(self, token: Token) -> Path:
        return Path(tuple(token.value.split("/")), pos=at(token))

    def call(self, name: Token, *args: Expr | None) -> Call:
        fname = name.value.lower()
        given = tuple(a for a in args if a is not None)  # None: lark's placeholder for "no arguments"
        arities = FUNCTIONS.get(fname)
        if arities is None:
            close = difflib.get_close_matches(fname, FUNCTIONS, n=1)
            hint = f"; did you mean {close[0]}()?" if close else ""
            raise ParseFailure(f"unknown function '{name.value}' — not a SensorThings API 1.1 function{hint}", at(name))
        if len(given) not in arities:
            expected = " or ".join(str(n) for n in arities)
            noun = "argument" if arities == (1,) else "arguments"
            raise ParseFailure(f"function {fname}() takes {expected} {noun}, got {len(given)}", at(name))
        return Call(fname, given, pos=at(name))

    def string_lit(self, t: Token) -> Literal:
        return Literal(t.value[1:-1].replace("''", "'"), "string", pos=at(t))

    def int_lit(self, t: Token) -> Literal:
        return Literal(_int(t), "int", pos=at(t))

    def float_lit(self, t: Token) -> Literal:
        return Literal(_float(t), "float", pos=at(t))

    def true_lit(self, t: Token) -> Literal:
        return Literal(True, "bool", pos=at(t))

    def false_lit(self, t: Token) -> Literal:
        return Literal(False, "bool", pos=at(t))

    def null_lit(self, t: Token) -> Literal:
        return Literal(None, "null", pos=at(t))

    def datetime_lit(self, t: Token) -> Literal:
        return Literal(_datetime(t), "datetime", pos=at(t))

    def date_lit(self, t: Token) -> Literal:
        return Literal(_date(t), "date", pos=at(t))

    def time_lit(self, t: Token) -> Literal:
        return Literal(_time(t), "time", pos=at(t))

    def duration_lit(self, t: Token) -> Literal:
        return Literal(_duration(t), "duration", pos=at(t))

    def geo_lit(self, t: Token) -> Literal:
        return Literal(_geometry(t), "geometry", pos=at(t))


def load_grammar() -> str:
    """The text of ``grammar.lark``."""
    return _FilePath(__file__).with_name("grammar.lark").read_text(encoding="utf-8")


@cache
def _filter_parser() -> Lark:
    # Built on first use: compiling the LALR tables takes tens of milliseconds.
    return Lark(load_grammar(), parser="lalr", lexer="contextual", start="filter", transformer=ExprBuilder())


# ------------------------------------------------------------------ errors

_OPERAND_TERMINALS: Final = frozenset(
    ("STRING", "INT", "DECIMAL", "TRUE", "FALSE", "NULL", "DATETIME", "DATE", "TIME", "DURATION", "GEO")
    + ("PATH", "FUNC", "LPAR", "NOT", "MINUS")
)
_OPERATOR_TERMINALS: Final = frozenset(["OR", "AND", "CMP", "ADDOP", "MULOP"])
_OPTION_TERMINALS: Final = frozenset(
    ["FILTER_OPT", "ORDERBY_OPT", "TOP_OPT", "SKIP_OPT", "COUNT_OPT", "SELECT_OPT", "EXPAND_OPT", "RESULTFORMAT_OPT"]
)
OPTION_NAMES: Final = ("$filter", "$orderby", "$top", "$skip", "$count", "$select", "$expand", "$resultFormat")
_PUNCTUATION: Final = {"RPAR": "')'", "LPAR": "'('", "COMMA": "','", "SEMICOLON": "';'", "EQUAL": "'='"}
_OPERATOR_HINTS: Final = {
    "=": "use eq to compare",
    "<": "use lt or le",
    ">": "use gt or ge",
    "!": "use ne or not",
    "&": "use and",
    "|": "use or",
    "+": "use add",
    "*": "use mul",
    "/": "use div to divide; a property path has no spaces around '/'",
}


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_APPLY_PHRASES: Final = {
    "WITH": "'with' and an aggregation method (as in result with average as mean)",
    "AS": "'as' and a name",
    "SLASH": "'/' and a further step",
}


def _describe_expected(expected: set[str] | frozenset[str]) -> str:
    phrases: list[str] = []
    # $apply (see apply.py): where its own words can come, they are what to name.
    if expected & {"APPLY_FILTER", "GROUPBY", "AGGREGATE"}:
        phrases.append("a transformation: filter(...), groupby((...), aggregate(...)) or aggregate(...)")
        expected = expected - {"APPLY_FILTER", "GROUPBY", "AGGREGATE"}
    if {"PATH", "COUNT_OPT"} <= expected:
        phrases.append("an aggregate such as result with average as mean or $count as n")
        expected = expected - {"PATH", "COUNT_OPT"}
    if "BUCKET" in expected:
        phrases.append("a property path such as Datastream/@iot.id or bucket(phenomenonTime, duration'PT1H') as name")
        expected = expected - {"BUCKET", "PATH"}
    phrases.extend(text for name, text in _APPLY_PHRASES.items() if name in expected)
    if expected & _OPERAND_TERMINALS - {"PATH"} and "PATH" in expected:
        phrases.append("a value, a property path or a function call")
    elif expected >= {"TRUE", "FALSE"}:
        phrases.append("true or false")
    elif "PATH" in expected:
        phrases.append("a property name")
    elif "INT" in expected:
        phrases.append("a non-negative integer")
    if expected & _OPERATOR_TERMINALS:
        phrases.append("an operator (eq, ne, gt, ge, lt, le, and, or, add, sub, mul, div, mod)")
    if expected & {"ASC", "DESC"}:
        phrases.append("asc or desc")
    if expected & _OPTION_TERMINALS:
        phrases.append("a query option (" + ", ".join(OPTION_NAMES) + ")")
    # '(' starts a value; it only needs a mention where no value can come.
    named = expected - {"LPAR"} if expected & _OPERAND_TERMINALS - {"LPAR"} else expected
    phrases.extend(text for name, text in _PUNCTUATION.items() if name in named)
    if "$END" in expected:
        phrases.append("the end of the input")
    if not phrases:
        return "something else"
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _parens(text: str) -> tuple[int | None, int | None]:
    """Position of the first ``)`` without a partner and of the first ``(`` never closed."""
    open_positions: list[int] = []
    for m in _PAREN_SCAN_RE.finditer(text):
        if m.group() == "(":
            open_positions.append(m.start())
        elif m.group() == ")":
            if not open_positions:
                return m.start(), None
            open_positions.pop()
    return None, (open_positions[0] if open_positions else None)


def _known_option_hint(name: str) -> str:
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1, cutoff=0.5)
    return f"; did you mean {close[0]}?" if close else ""


def _acceptable(parser: Lark, text: str, pos: int, start: str, fallback: set[str]) -> set[str]:
    """The terminals that could really come at ``pos``.

    Lark's own sets are too wide: LALR merges lookaheads, so they list ')'
    and ',' even at the top level, and the parser may already have reduced
    on the bad token. So the input before ``pos`` is fed again and every
    terminal is tried on a copy of that state. This runs on the error path only.
    """
    try:
        interactive = parser.parse_interactive(text[:pos], start=start)
        interactive.exhaust_lexer()
        state = interactive.parser_state
        names = [t.name for t in parser.terminals] + ["$END"]
    except Exception:  # only the wording of the message depends on this
        return fallback
    accepted: set[str] = set()
    for name in names:
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(Token(name, ""), is_end=name == "$END")
        except UnexpectedToken:
            continue
        except Exception:  # a callback refused the values; the syntax was fine
            pass
        accepted.add(name)
    return accepted or fallback


def _translate(exc: UnexpectedInput, text: str, parser: Lark, start: str) -> tuple[str, int]:
    """A human message and position for a lark error."""
    stray_close, unclosed_open = _parens(text)
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            pos = len(text)
            if unclosed_open is not None:
                return "unbalanced parenthesis: '(' is never closed", unclosed_open
            found = "end of input"
        else:
            pos = at(token)
            if token.type == "RPAR" and stray_close == pos:
                return "unbalanced parenthesis: ')' has no matching '('", pos
            found = "string literal" if token.type == "STRING" else "'" + _shorten(token.value) + "'"
        expected = _acceptable(parser, text, pos, start, set(exc.expected))
        message = f"unexpected {found} — expected {_describe_expected(expected)}"
        if token.type == "TIME" and _TZ_PLUS_AS_SPACE_RE.search(text[:pos]):
            message += "; a '+' in a time zone offset must be sent URL-encoded as %2B"
        elif token.type != "$END" and expected & _OPERATOR_TERMINALS and token.value[:1] in _OPERATOR_HINTS:
            message += f" ({_OPERATOR_HINTS[token.value[:1]]})"
        elif token.type != "$END" and pos > 0 and text[pos - 1] == "'":
            message += " (a quote inside a string is written as '')"
        return message, pos
    if isinstance(exc, UnexpectedCharacters):
        cpos: int = exc.pos_in_stream or 0
        allowed = _acceptable(parser, text, cpos, start, set(exc.allowed or ()))
        char = exc.char
        if char == "'":
            return "unterminated string literal: a closing ' is missing (write '' for a quote inside)", cpos
        if char == "$" and allowed & _OPTION_TERMINALS:
            m = re.compile(r"\$?\w*").match(text, cpos)
            name = m.group() if m else "$"
            return f"unknown query option '{_shorten(name)}'{_known_option_hint(name)}", cpos
        if char == ")" and stray_close == cpos:
            return "unbalanced parenthesis: ')' has no matching '('", cpos
        message = f"unexpected character {char!r} — expected {_describe_expected(allowed)}"
        if char in _OPERATOR_HINTS and allowed & _OPERATOR_TERMINALS:
            message += f" ({_OPERATOR_HINTS[char]})"
        return message, cpos
    return "could not parse the input", getattr(exc, "pos_in_stream", None) or 0


# ------------------------------------------------------------------ entry points

_EMPTY_WHAT: Final = {
    "filter": "an expression",
    "orderby": "an expression to order by",
    "select": "a property name",
    "expand": "a navigation property name",
    "apply": "a transformation such as groupby((...), aggregate(...))",
}


def check_depth(expr: Expr, option: str) -> None:
    """Refuse expression trees deeper than ``MAX_DEPTH``, walking without recursion."""
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QuerySyntaxError(
                f"expression is nested too deeply (more than {MAX_DEPTH} levels); for long lists of"
                " alternatives, split the request",
                option=option,
                position=node.pos,
            )
        if isinstance(node, BinaryOp):
            stack.append((node.left, depth + 1))
            stack.append((node.right, depth + 1))
        elif isinstance(node, UnaryOp):
            stack.append((node.operand, depth + 1))
        elif isinstance(node, Call):
            stack.extend((arg, depth + 1) for arg in node.args)


def run_parser(parser: Lark, text: str, start: str, option: str) -> Any:
    """Parse ``text`` from rule ``start``; every failure becomes a ``QuerySyntaxError``."""
    if len(text) > MAX_LENGTH:
        raise QuerySyntaxError(
            f"value is too long ({len(text)} characters; at most {MAX_LENGTH})", option=option, position=MAX_LENGTH
        )
    if not text.strip(" \t\r\n"):
        raise QuerySyntaxError(
            f"value is empty — expected {_EMPTY_WHAT.get(start, 'a value')}", option=option, position=len(text)
        )
    try:
        return parser.parse(text, start=start)
    except ParseFailure as exc:
        raise QuerySyntaxError(exc.message, option=option, position=exc.pos) from None
    except UnexpectedInput as exc:
        try:
            message, pos = _translate(exc, text, parser, start)
        except Exception:  # a bug in the wording must not turn a 400 into a 500
            message, pos = "could not parse the value", at(exc.token) if isinstance(exc, UnexpectedToken) else 0
        raise QuerySyntaxError(message, option=option, position=pos) from None
    except Exception as exc:
        # Not expected to happen (lark internals, an unforeseen literal); the
        # client still gets a 400 that names the option, not a 500.
        raise QuerySyntaxError(f"could not parse the value ({type(exc).__name__})", option=option) from None


def parse_expression(text: str, option: str = "$filter") -> Expr:
    """Parse one expression of the ``$filter`` language; positions are offsets into ``text``."""
    expr: Expr = run_parser(_filter_parser(), text, "filter", option)
    check_depth(expr, option)
    return expr


def parse_filter(text: str, option: str = "$filter") -> Expr:
    """Parse a ``$filter`` value into an ``Expr``, or raise ``QuerySyntaxError`` naming the position.

    Whether the result is boolean, and whether its paths exist, is for the
    type checker to decide.
    """
    return parse_expression(text, option)
