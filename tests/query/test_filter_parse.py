"""Table-driven and property tests of the ``$filter`` parser."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stadsdata.errors import QuerySyntaxError
from stadsdata.query.ast import BinaryOp, Call, Expr, Literal, Path, UnaryOp
from stadsdata.query.filter import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, parse_expression, parse_filter


def P(*segments: str) -> Path:
    return Path(segments)


def L(value: object, type_: str) -> Literal:
    return Literal(value, type_)


def B(op: str, left: Expr, right: Expr) -> BinaryOp:
    return BinaryOp(op, left, right)


def C(name: str, *args: Expr) -> Call:
    return Call(name, args)


def I(value: int) -> Literal:  # noqa: E743 - short names keep the tables readable
    return Literal(value, "int")


def S(value: str) -> Literal:
    return Literal(value, "string")


JAN1 = datetime(2020, 1, 1, tzinfo=UTC)
SQUARE = "POLYGON((6.8 52.2, 6.9 52.2, 6.9 52.3, 6.8 52.2))"

CASES: list[tuple[str, Expr]] = [
    # The examples of the SensorThings specification and of FROST's documentation.
    (
        "result gt 20 and phenomenonTime ge 2020-01-01T00:00:00Z",
        B("and", B("gt", P("result"), I(20)), B("ge", P("phenomenonTime"), L(JAN1, "datetime"))),
    ),
    ("substringof('abc', name)", C("substringof", S("abc"), P("name"))),
    (
        f"geo.intersects(location, geography'{SQUARE}')",
        C("geo.intersects", P("location"), L(SQUARE, "geometry")),
    ),
    (
        "st_within(Thing/Locations/location, geography'POINT(7.0 52.2)')",
        C("st_within", P("Thing", "Locations", "location"), L("POINT(7.0 52.2)", "geometry")),
    ),
    ("Datastream/Thing/@iot.id eq 3", B("eq", P("Datastream", "Thing", "@iot.id"), I(3))),
    ("properties/buurt eq 'Roombeek'", B("eq", P("properties", "buurt"), S("Roombeek"))),
    ("not (a eq 1)", UnaryOp("not", B("eq", P("a"), I(1)))),
    (
        "geo.distance(location, geometry'POINT(1 2)') lt 10",
        B("lt", C("geo.distance", P("location"), L("POINT(1 2)", "geometry")), I(10)),
    ),
    ("during(phenomenonTime, resultTime)", C("during", P("phenomenonTime"), P("resultTime"))),
    ("before(phenomenonTime, 2020-01-01T00:00:00Z)", C("before", P("phenomenonTime"), L(JAN1, "datetime"))),
    ("year(phenomenonTime) eq 2020", B("eq", C("year", P("phenomenonTime")), I(2020))),
    ("round(result) mod 2 eq 0", B("eq", B("mod", C("round", P("result")), I(2)), I(0))),
    ("substring(name, 1, 2) eq 'ab'", B("eq", C("substring", P("name"), I(1), I(2)), S("ab"))),
    ("st_relate(a, b, 'T*F**FFF*')", C("st_relate", P("a"), P("b"), S("T*F**FFF*"))),
    ("concat(concat(a, ' '), b)", C("concat", C("concat", P("a"), S(" ")), P("b"))),
    ("tolower(name) eq 'x'", B("eq", C("tolower", P("name")), S("x"))),
    # Precedence, lowest to highest: or; and; comparison; add sub; mul div mod; not and minus.
    ("a add b mul c eq 7", B("eq", B("add", P("a"), B("mul", P("b"), P("c"))), I(7))),
    ("a sub b sub c", B("sub", B("sub", P("a"), P("b")), P("c"))),
    ("a div b mul c", B("mul", B("div", P("a"), P("b")), P("c"))),
    ("a or b and c", B("or", P("a"), B("and", P("b"), P("c")))),
    ("a and b or c", B("or", B("and", P("a"), P("b")), P("c"))),
    ("(a or b) and c", B("and", B("or", P("a"), P("b")), P("c"))),
    (
        "a eq 1 or b ne 2 and c lt 3",
        B("or", B("eq", P("a"), I(1)), B("and", B("ne", P("b"), I(2)), B("lt", P("c"), I(3)))),
    ),
    ("not a eq 1", B("eq", UnaryOp("not", P("a")), I(1))),
    ("not not a", UnaryOp("not", UnaryOp("not", P("a")))),
    ("-a mul b", B("mul", UnaryOp("neg", P("a")), P("b"))),
    ("-(a add b)", UnaryOp("neg", B("add", P("a"), P("b")))),
    ("a le b add 1", B("le", P("a"), B("add", P("b"), I(1)))),
    ("((((a))))", P("a")),
    # Negative numbers are literals; a minus before anything else is a negation.
    ("-a", UnaryOp("neg", P("a"))),
    ("-5", I(-5)),
    ("- 5", I(-5)),
    ("-1.5", L(-1.5, "float")),
    ("a sub -2", B("sub", P("a"), I(-2))),
    ("result gt -0.5e1", B("gt", P("result"), L(-5.0, "float"))),
    # Literals.
    ("'it''s'", S("it's")),
    ("''", S("")),
    ("'straße ☂'", S("straße ☂")),
    ("'a;b),c('", S("a;b),c(")),
    ("007", I(7)),
    ("1.5", L(1.5, "float")),
    ("1.5e3", L(1500.0, "float")),
    ("1E-2", L(0.01, "float")),
    ("9223372036854775807", I(2**63 - 1)),
    ("true", L(True, "bool")),
    ("false", L(False, "bool")),
    ("null", L(None, "null")),
    ("2020-01-01T00:00:00Z", L(JAN1, "datetime")),
    ("2020-01-01T01:00:00+01:00", L(JAN1, "datetime")),
    (
        "2020-01-01T00:00:00.123-02:30",
        L(datetime(2020, 1, 1, 0, 0, 0, 123000, timezone(-timedelta(hours=2, minutes=30))), "datetime"),
    ),
    ("2020-01-01T00:00:00.1234567Z", L(datetime(2020, 1, 1, 0, 0, 0, 123456, UTC), "datetime")),
    ("2020-01-01T10:30Z", L(datetime(2020, 1, 1, 10, 30, tzinfo=UTC), "datetime")),
    ("2020-01-01T00:00:00", L(JAN1, "datetime")),
    ("2020-01-01", L(date(2020, 1, 1), "date")),
    ("12:30:00", L(time(12, 30), "time")),
    ("12:30", L(time(12, 30), "time")),
    ("12:30:00.25", L(time(12, 30, 0, 250000), "time")),
    ("duration'P1DT2H'", L(timedelta(days=1, hours=2), "duration")),
    ("duration'PT15M'", L(timedelta(minutes=15), "duration")),
    ("duration'PT0.1S'", L(timedelta(microseconds=100000), "duration")),
    ("duration'P2W'", L(timedelta(weeks=2), "duration")),
    ("duration'-P1D'", L(timedelta(days=-1), "duration")),
    ("Duration'P1D'", L(timedelta(days=1), "duration")),
    ("duration'P1DT1H1M1.5S'", L(timedelta(days=1, hours=1, minutes=1, seconds=1.5), "duration")),
    (
        "phenomenonTime add duration'P1D' gt now()",
        B("gt", B("add", P("phenomenonTime"), L(timedelta(days=1), "duration")), C("now")),
    ),
    ("geography'SRID=4326;POINT(1 2)'", L("SRID=4326;POINT(1 2)", "geometry")),
    ("geography' MULTIPOLYGON(((1 2, 3 4, 5 6, 1 2))) '", L("MULTIPOLYGON(((1 2, 3 4, 5 6, 1 2)))", "geometry")),
    ("geometry'POINT EMPTY'", L("POINT EMPTY", "geometry")),
    ("GEOGRAPHY'point z (1 2 3)'", L("point z (1 2 3)", "geometry")),
    # Paths, including names that start with a keyword.
    ("@iot.id eq 1", B("eq", P("@iot.id"), I(1))),
    ("id eq 1", B("eq", P("id"), I(1))),
    ("properties/a/b", P("properties", "a", "b")),
    ("properties/2020", P("properties", "2020")),
    ("result/level", P("result", "level")),
    ("Locations/location", P("Locations", "location")),
    ("order eq 1 and notes ne null", B("and", B("eq", P("order"), I(1)), B("ne", P("notes"), L(None, "null")))),
    ("android or orange", B("or", P("android"), P("orange"))),
    ("equals eq nothing", B("eq", P("equals"), P("nothing"))),
    ("truely eq nullable", B("eq", P("truely"), P("nullable"))),
    ("descr eq asc_name", B("eq", P("descr"), P("asc_name"))),
    ("Gemeente_2 eq 'x'", B("eq", P("Gemeente_2"), S("x"))),
    ("True eq NULL", B("eq", P("True"), P("NULL"))),  # keywords are lower-case only
    # Function names are case-insensitive; spacing is free around operators and arguments.
    ("SubstringOf('a', name)", C("substringof", S("a"), P("name"))),
    ("GEO.DISTANCE(a, b)", C("geo.distance", P("a"), P("b"))),
    ("now ( )", C("now")),
    ("mindatetime() lt maxdatetime()", B("lt", C("mindatetime"), C("maxdatetime"))),
    ("\ta\teq\n1 ", B("eq", P("a"), I(1))),
    (
        "startswith(name,'x')and endswith(name,'y')",
        B("and", C("startswith", P("name"), S("x")), C("endswith", P("name"), S("y"))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:50] for c in CASES])
def test_parses_to_expected_tree(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


def test_literal_value_types_are_exact() -> None:
    assert type(parse_filter("1").value) is int  # type: ignore[union-attr]
    assert type(parse_filter("1.0").value) is float  # type: ignore[union-attr]
    dt = parse_filter("2020-01-01T00:00:00").value  # type: ignore[union-attr]
    assert isinstance(dt, datetime) and dt.tzinfo is not None
    d = parse_filter("2020-01-01").value  # type: ignore[union-attr]
    assert type(d) is date


def test_parse_expression_is_the_same_language() -> None:
    assert parse_expression("a add 1", "$orderby") == parse_filter("a add 1")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_parses_with_each_arity(name: str) -> None:
    for arity in FUNCTIONS[name]:
        args = ", ".join(f"p{i}" for i in range(arity))
        assert parse_filter(f"{name}({args})") == Call(name, tuple(P(f"p{i}") for i in range(arity)))


def _positions(expr: Expr) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        out.append((type(node).__name__, node.pos))
        if isinstance(node, BinaryOp):
            stack += [node.right, node.left]
        elif isinstance(node, UnaryOp):
            stack.append(node.operand)
        elif isinstance(node, Call):
            stack += reversed(node.args)
    return out


def test_positions_point_at_operators_and_operands() -> None:
    text = "result gt 20 and phenomenonTime ge 2020-01-01T00:00:00Z"
    assert _positions(parse_filter(text)) == [
        ("BinaryOp", 13),
        ("BinaryOp", 7),
        ("Path", 0),
        ("Literal", 10),
        ("BinaryOp", 32),
        ("Path", 17),
        ("Literal", 35),
    ]


def test_positions_of_calls_unary_and_negative_literals() -> None:
    #        0         1         2         3         4
    #        0123456789012345678901234567890123456789012345
    text = "not (-a) and length(q) eq -3 or st_within(x, y)"
    assert _positions(parse_filter(text)) == [
        ("BinaryOp", 29),
        ("BinaryOp", 9),
        ("UnaryOp", 0),
        ("UnaryOp", 5),
        ("Path", 6),
        ("BinaryOp", 23),
        ("Call", 13),
        ("Path", 20),
        ("Literal", 26),
        ("Call", 32),
        ("Path", 42),
        ("Path", 45),
    ]


ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty"),
    ("   ", 3, "empty"),
    ("name eq", 7, "unexpected end of input — expected a value, a property path or a function call"),
    ("eq 1", 0, "unexpected 'eq' — expected a value, a property path or a function call"),
    ("name eq eq 1", 8, "unexpected 'eq'"),
    ("(a eq 1", 0, "unbalanced parenthesis"),
    ("a eq (1 add (2)", 5, "unbalanced parenthesis"),
    ("a eq 1)", 6, "unbalanced parenthesis"),
    ("name eq 'abc", 8, "unterminated string literal"),
    ("name eq 'it's'", 12, "a quote inside a string is written as ''"),
    ("name eq 'it's' and x eq 'y'", 12, "a quote inside a string is written as ''"),
    ("name eq 'it's' and x eq 'y", 12, "a quote inside a string is written as ''"),
    ("a = 1", 2, "use eq"),
    ("a eq 1 && b", 7, "use and"),
    ("a eq 1 android", 7, "unexpected 'android' — expected an operator"),
    ("a eq 1 and", 10, "end of input"),
    ("not", 3, "end of input"),
    ("Datastream / Thing", 11, "unexpected character '/'"),
    ("name/", 4, "unexpected character '/'"),
    ('a eq "x"', 5, "unexpected character '\"'"),
    ("a\x00", 1, "unexpected character '\\x00'"),
    ("a eq 1 $", 7, "unexpected character '$'"),
    ("f(a,)", 4, "unexpected ')'"),
    ("a.b eq 1", 1, "unexpected character '.'"),
    ("foo(1)", 0, "unknown function 'foo'"),
    ("x eq floo(a)", 5, "did you mean floor()"),
    ("contains(name, 'x')", 0, "unknown function 'contains'"),
    ("substring(name)", 0, "substring() takes 2 or 3 arguments, got 1"),
    ("now(1)", 0, "now() takes 0 arguments"),
    ("a eq length()", 5, "length() takes 1 argument, got 0"),
    ("st_relate(a, b)", 0, "takes 3 arguments"),
    ("duration'P1M'", 0, "years and months have no fixed length"),
    ("a add duration'P1Y2D'", 6, "years and months"),
    ("duration'PT'", 0, "invalid duration"),
    ("duration'1D'", 0, "invalid duration"),
    ("duration''", 0, "invalid duration"),
    ("duration'P1D", 8, "unterminated string literal"),
    ("geography'CIRCLE(1 2)'", 0, "invalid geometry"),
    ("geography'POINT(1 2'", 0, "invalid geometry"),
    ("geography''", 0, "invalid geometry"),
    ("a eq 2020-02-30", 5, "invalid date"),
    ("a eq 2020-01-01T25:00:00Z", 5, "invalid date-time"),
    ("a eq 2020-01-01T00:00:00+25:00", 5, "invalid date-time"),
    ("a eq 25:00", 5, "invalid time"),
    ("a eq 2020-01-01T00:00:00 01:00", 25, "URL-encoded as %2B"),
    ("99999999999999999999", 0, "too large"),
    ("9" * 5000, 0, "too large"),
    ("1e999", 0, "too large"),
    ("NOT(a)", 0, "unknown function 'NOT'"),
    ("a EQ 1", 2, "unexpected 'EQ'"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_filter(text)
    err = info.value
    assert err.details == {"option": "$filter", "position": position}
    assert fragment in err.message
    assert err.message.startswith(f"$filter at position {position}: ")


def test_error_names_the_option_it_came_from() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_filter("a eq", "$orderby")
    assert info.value.details["option"] == "$orderby"


def test_too_long_input_is_refused_before_parsing() -> None:
    with pytest.raises(QuerySyntaxError, match="too long"):
        parse_filter("a" * (MAX_LENGTH + 1))


def test_deep_parentheses_parse_without_recursion() -> None:
    depth = MAX_LENGTH // 2 - 1
    assert parse_filter("(" * depth + "a" + ")" * depth) == P("a")


@pytest.mark.parametrize(
    "text",
    [
        "not " * (MAX_DEPTH + 1) + "a",
        "-" * (MAX_DEPTH + 1) + "a",
        " or ".join(["a eq 1"] * (MAX_DEPTH + 1)),
        "length(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1),
        "(" * 9000 + "a",
        "f(" * 9000,
    ],
    ids=["not-chain", "minus-chain", "or-chain", "call-chain", "open-parens", "open-calls"],
)
def test_deep_or_long_input_gives_a_clear_error(text: str) -> None:
    with pytest.raises(QuerySyntaxError, match="nested too deeply|unbalanced parenthesis|too long"):
        parse_filter(text)


def test_long_alternatives_within_the_depth_limit_parse() -> None:
    expr = parse_filter(" or ".join(f"id eq {i}" for i in range(150)))
    assert isinstance(expr, BinaryOp) and expr.op == "or"


def test_minus_chain_on_a_number_folds() -> None:
    assert parse_filter("-" * 1000 + "1") == I(1)


# ---------------------------------------------------------------- properties

_SOUP = st.sampled_from(
    [
        *"()',;=$/@.-:+ \t\n\x00\"",
        "a",
        "eq",
        " and ",
        " or ",
        "not ",
        "add",
        "1",
        "1.5",
        "'x'",
        "''",
        "true",
        "null",
        "geo.distance(",
        "substring(",
        "now()",
        "duration'",
        "geography'",
        "POINT(1 2)",
        "P1D",
        "2020-01-01",
        "T00:00:00Z",
        "12:30",
        "@iot.id",
        "Thing/",
        "name",
        ",",
        "e5",
    ]
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.lists(_SOUP, max_size=30).map("".join)))
def test_arbitrary_text_raises_only_query_syntax_errors(text: str) -> None:
    try:
        parse_filter(text)
    except QuerySyntaxError as err:
        position = err.details.get("position")
        assert position is None or 0 <= position <= max(len(text), MAX_LENGTH)


_KEYWORDS = {
    "or",
    "and",
    "not",
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "true",
    "false",
    "null",
    "asc",
    "desc",
}
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s not in _KEYWORDS)
_paths = st.lists(st.one_of(_names, st.just("@iot.id")), min_size=1, max_size=4).map(lambda s: Path(tuple(s)))
_literals = st.one_of(
    st.text(max_size=10).map(lambda s: Literal(s, "string")),
    st.integers(-(2**63) + 1, 2**63 - 1).map(lambda n: Literal(n, "int")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Literal(f, "float")),
    st.booleans().map(lambda b: Literal(b, "bool")),
    st.just(Literal(None, "null")),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])).map(lambda d: Literal(d, "datetime")),
    st.dates().map(lambda d: Literal(d, "date")),
    st.times().map(lambda t: Literal(t, "time")),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**5)).map(lambda d: Literal(d, "duration")),
    st.sampled_from(["POINT(1 2)", "LINESTRING(1 2, 3 4)", "POLYGON((0 0, 1 0, 1 1, 0 0))"]).map(
        lambda w: Literal(w, "geometry")
    ),
)


def _exprs() -> st.SearchStrategy[Expr]:
    def extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        ops = ["eq", "ne", "gt", "ge", "lt", "le", "and", "or", "add", "sub", "mul", "div", "mod"]
        calls = [(name, n) for name, arities in FUNCTIONS.items() for n in arities]
        return st.one_of(
            st.builds(BinaryOp, st.sampled_from(ops), children, children),
            st.builds(UnaryOp, st.just("not"), children),
            # A minus before a number literal is folded into it, so generate negations of the rest only.
            st.builds(
                UnaryOp,
                st.just("neg"),
                children.filter(lambda c: not (isinstance(c, Literal) and c.type in ("int", "float"))),
            ),
            st.sampled_from(calls).flatmap(
                lambda c: st.lists(children, min_size=c[1], max_size=c[1]).map(lambda a: Call(c[0], tuple(a)))
            ),
        )

    return st.recursive(st.one_of(_paths, _literals), extend, max_leaves=12)


def render(expr: Expr) -> str:
    """Write ``expr`` as fully parenthesised filter text."""
    if isinstance(expr, Path):
        return "/".join(expr.segments)
    if isinstance(expr, Call):
        return f"{expr.name}({', '.join(render(a) for a in expr.args)})"
    if isinstance(expr, BinaryOp):
        return f"({render(expr.left)} {expr.op} {render(expr.right)})"
    if isinstance(expr, UnaryOp):
        return f"(not {render(expr.operand)})" if expr.op == "not" else f"(-{render(expr.operand)})"
    v = expr.value
    if expr.type == "string":
        assert isinstance(v, str)
        return "'" + v.replace("'", "''") + "'"
    if expr.type in ("int", "float"):
        return repr(v)
    if expr.type == "bool":
        return "true" if v else "false"
    if expr.type == "null":
        return "null"
    if expr.type == "duration":
        assert isinstance(v, timedelta)
        return f"duration'P{v.days}DT{v.seconds}.{v.microseconds:06d}S'"
    if expr.type == "geometry":
        return f"geography'{v}'"
    assert isinstance(v, (datetime, date, time))
    return v.isoformat()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_exprs())
def test_generated_expressions_round_trip(expr: Expr) -> None:
    assert parse_filter(render(expr)) == expr
