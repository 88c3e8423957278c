"""Table-driven and property tests of the system query options parser."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stadsdata.errors import QuerySyntaxError
from stadsdata.query.ast import BinaryOp, Call, Expand, Literal, OrderBy, Path, QueryOptions
from stadsdata.query.filter import parse_filter
from stadsdata.query.options import MAX_EXPAND_DEPTH, parse_expand, parse_options, parse_orderby, parse_select


def E(relation: str, **options: object) -> Expand:
    return Expand(relation, QueryOptions(**options))  # type: ignore[arg-type]


def P(*segments: str) -> Path:
    return Path(segments)


def I(value: int) -> Literal:  # noqa: E743 - short names keep the tables readable
    return Literal(value, "int")


def test_a_typical_request() -> None:
    params = {
        "$filter": "result gt 20",
        "$orderby": "phenomenonTime desc",
        "$top": "10",
        "$skip": "20",
        "$count": "true",
        "$select": "result,phenomenonTime",
        "$expand": "Datastream($select=name)",
        "$resultFormat": "dataArray",
        "callback": "ignored",
        "format": "ignored too",
    }
    assert parse_options(params) == QueryOptions(
        filter=BinaryOp("gt", P("result"), I(20)),
        orderby=(OrderBy(P("phenomenonTime"), descending=True),),
        top=10,
        skip=20,
        count=True,
        select=("result", "phenomenonTime"),
        expand=(E("Datastream", select=("name",)),),
        result_format="dataArray",
    )


def test_no_options_gives_the_defaults() -> None:
    assert parse_options({}) == QueryOptions()
    assert parse_options({"id": "3", "foo": "$bar"}) == QueryOptions()


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("10", 10), (" 3 ", 3), ("0007", 7), (str(2**63 - 1), 2**63 - 1)]
)
@pytest.mark.parametrize("name", ["$top", "$skip"])
def test_top_and_skip(name: str, text: str, value: int) -> None:
    assert getattr(parse_options({name: text}), name[1:]) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5", "ten", "1e3", "+1", "١٢", str(2**63), "9" * 5000, "1 2"])
@pytest.mark.parametrize("name", ["$top", "$skip"])
def test_top_and_skip_refuse_anything_but_a_non_negative_integer(name: str, text: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_options({name: text})
    assert info.value.details["option"] == name


@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False), (" true", True)])
def test_count(text: str, value: bool) -> None:
    assert parse_options({"$count": text}).count is value


@pytest.mark.parametrize("text", ["", "True", "1", "yes", "null"])
def test_count_refuses_other_values(text: str) -> None:
    with pytest.raises(QuerySyntaxError, match=r"\$count.*expected true or false"):
        parse_options({"$count": text})


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("name", ("name",)),
        (" id , @iot.id,name ", ("id", "@iot.id", "name")),
        ("Datastreams,description", ("Datastreams", "description")),
        ("properties/owner", ("properties/owner",)),
        ("name,name", ("name",)),
        ("order,notes,android", ("order", "notes", "android")),
    ],
)
def test_select(text: str, names: tuple[str, ...]) -> None:
    assert parse_select(text) == names
    assert parse_options({"$select": text}).select == names


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("a,,b", 2, "expected a property name"),
        ("a b", 2, "unexpected 'b'"),
        ("a,", 2, "end of input"),
        ("eq", 0, "unexpected 'eq'"),
        ("a;b", 1, "unexpected ';' — expected ',' or the end of the input"),
    ],
)
def test_select_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_select(text)
    assert info.value.details == {"option": "$select", "position": position}
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("result desc", (OrderBy(P("result"), True),)),
        ("result asc", (OrderBy(P("result"), False),)),
        ("result DESC", (OrderBy(P("result"), True),)),  # OData 4.01: asc/desc are case-insensitive
        ("result Asc", (OrderBy(P("result"), False),)),
        ("result", (OrderBy(P("result"), False),)),
        ("year(phenomenonTime) asc", (OrderBy(Call("year", (P("phenomenonTime"),)), False),)),
        ("phenomenonTime desc, @iot.id", (OrderBy(P("phenomenonTime"), True), OrderBy(P("@iot.id"), False))),
        ("a add b desc,c", (OrderBy(BinaryOp("add", P("a"), P("b")), True), OrderBy(P("c"), False))),
        ("description desc", (OrderBy(P("description"), True),)),
        ("ascending asc", (OrderBy(P("ascending"), False),)),
    ],
)
def test_orderby(text: str, items: tuple[OrderBy, ...]) -> None:
    assert parse_orderby(text) == items
    assert parse_options({"$orderby": text}).orderby == items


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("result down", 7, "unexpected 'down' — expected an operator"),
        ("desc", 0, "unexpected"),
        ("a,", 2, "end of input"),
        ("a desc desc", 7, "unexpected 'desc'"),
        ("foo(a)", 0, "unknown function"),
    ],
)
def test_orderby_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_options({"$orderby": text})
    assert info.value.details == {"option": "$orderby", "position": position}
    assert fragment in info.value.message


EXPANDS: list[tuple[str, tuple[Expand, ...]]] = [
    ("Datastreams", (E("Datastreams"),)),
    ("Datastreams,Locations", (E("Datastreams"), E("Locations"))),
    ("Datastreams/Observations", (E("Datastreams", expand=(E("Observations"),)),)),
    ("Datastreams/Observations($top=1)", (E("Datastreams", expand=(E("Observations", top=1),)),)),
    (
        "Datastreams($filter=name eq 'a;b)c,(';$top=3;$skip=1;$count=false)",
        (E("Datastreams", filter=BinaryOp("eq", P("name"), Literal("a;b)c,(", "string")), top=3, skip=1, count=False),),
    ),
    (
        "Datastreams($select=name,@iot.id;$orderby=name desc,id;$expand=Observations($filter=(result gt 1);$top=2))",
        (
            E(
                "Datastreams",
                select=("name", "@iot.id"),
                orderby=(OrderBy(P("name"), True), OrderBy(P("id"), False)),
                expand=(E("Observations", filter=BinaryOp("gt", P("result"), I(1)), top=2),),
            ),
        ),
    ),
    (
        "Things($expand=Datastreams($expand=Observations($expand=FeatureOfInterest($select=name))))",
        (
            E(
                "Things",
                expand=(
                    E("Datastreams", expand=(E("Observations", expand=(E("FeatureOfInterest", select=("name",)),)),)),
                ),
            ),
        ),
    ),
    # Items naming the same relation merge, nested expands included.
    ("Datastreams/Observations,Datastreams/Sensor", (E("Datastreams", expand=(E("Observations"), E("Sensor"))),)),
    (
        "Datastreams/Observations,Datastreams($select=name)",
        (E("Datastreams", select=("name",), expand=(E("Observations"),)),),
    ),
    ("Datastreams($top=1),Datastreams($top=1;$select=name)", (E("Datastreams", top=1, select=("name",)),)),
    (
        "Datastreams($expand=Sensor),Datastreams($expand=Sensor($select=name))",
        (E("Datastreams", expand=(E("Sensor", select=("name",)),)),),
    ),
    (
        "Datastreams/Observations($top=1),Datastreams/Observations($skip=2)",
        (E("Datastreams", expand=(E("Observations", top=1, skip=2),)),),
    ),
    ("Datastreams ( $top = 1 ) , Locations", (E("Datastreams", top=1), E("Locations"))),
    ("Datastreams($resultFormat=dataArray)", (E("Datastreams", result_format="dataArray"),)),
]


@pytest.mark.parametrize(("text", "expected"), EXPANDS, ids=[e[0][:60] for e in EXPANDS])
def test_expand(text: str, expected: tuple[Expand, ...]) -> None:
    assert parse_expand(text) == expected
    assert parse_options({"$expand": text}).expand == expected


def test_expand_positions_are_offsets_in_the_whole_option() -> None:
    #       0         1         2         3         4
    #       012345678901234567890123456789012345678901234
    text = "Locations,Datastreams/Observations($filter=result gt 1)"
    locations, datastreams = parse_expand(text)
    observations = datastreams.options.expand[0]
    assert (locations.pos, datastreams.pos, observations.pos) == (0, 10, 22)
    flt = observations.options.filter
    assert isinstance(flt, BinaryOp)
    assert (flt.left.pos, flt.pos, flt.right.pos) == (43, 50, 53)


EXPAND_ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty"),
    ("Datastreams(", 11, "unbalanced parenthesis"),
    ("Datastreams($top=1", 11, "unbalanced parenthesis"),
    ("Datastreams)", 11, "unbalanced parenthesis"),
    ("Datastreams()", 12, "expected a query option"),
    ("Datastreams($foo=1)", 12, "unknown query option '$foo'"),
    ("Datastreams($Filter=a eq 1)", 12, "did you mean $filter?"),
    ("Datastreams(top=1)", 12, "expected a query option"),
    ("Datastreams($top=-1)", 17, "expected a non-negative integer"),
    ("Datastreams($top=x)", 17, "expected a non-negative integer"),
    ("Datastreams($top=99999999999999999999)", 17, "too large"),
    ("Datastreams($count=yes)", 19, "expected true or false"),
    ("Datastreams($filter=name eq)", 27, "expected a value, a property path or a function call"),
    ("Datastreams($filter=name eq 'x)", 28, "unterminated string literal"),
    ("Datastreams($filter=foo(1))", 20, "unknown function 'foo'"),
    ("Datastreams($top=1;$top=2)", 19, "$top is given twice"),
    ("Datastreams($top=1),Datastreams($top=2)", 20, "expanded twice with different $top"),
    ("Datastreams/Observations($top=1),Datastreams/Observations($top=2)", 45, "different $top"),
    ("Datastreams($top=1),,Locations", 20, "expected a property name"),
    ("Datastreams,", 12, "end of input"),
    ("@iot.id", 0, "not a navigation property"),
    ("Datastreams/@iot.id", 12, "not a navigation property"),
    ("Datastreams($top=1;)", 19, "expected a query option"),
    ("Datastreams($top=1,$skip=1)", 18, "unexpected ','"),
    ("Datastreams $top=1", 12, "unexpected '$top' — expected '(', ',' or the end of the input"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), EXPAND_ERRORS, ids=[e[0][:50] for e in EXPAND_ERRORS])
def test_expand_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_options({"$expand": text})
    assert info.value.details == {"option": "$expand", "position": position}
    assert fragment in info.value.message


def test_expand_depth_is_capped() -> None:
    ok = "/".join(["A"] * MAX_EXPAND_DEPTH)
    assert parse_expand(ok)
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_expand(ok + "/A")
    nested = "A($expand=" * MAX_EXPAND_DEPTH + "A" + ")" * MAX_EXPAND_DEPTH
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_expand(nested)


def test_expand_checks_the_depth_of_nested_filters() -> None:
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_expand("A($filter=" + "not " * 500 + "a)")


@pytest.mark.parametrize(
    ("key", "hint"), [("$foo", ""), ("$Filter", "did you mean $filter?"), ("$orderBy", "$orderby")]
)
def test_unknown_dollar_options_are_refused(key: str, hint: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_options({key: "x"})
    assert f"unknown query option '{key}'" in info.value.message
    assert hint in info.value.message


def test_result_format_is_kept_as_given() -> None:
    assert parse_options({"$resultFormat": "dataArray"}).result_format == "dataArray"
    assert parse_options({"$resultFormat": "GeoJSON"}).result_format == "GeoJSON"


def test_filter_errors_name_the_filter_option() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_options({"$filter": "a eq"})
    assert info.value.details == {"option": "$filter", "position": 4}


# ---------------------------------------------------------------- properties

_SOUP = st.sampled_from(
    [
        *"()',;=$/@ .",
        "Datastreams",
        "Observations",
        "$filter=",
        "$top=",
        "$expand=",
        "$select=",
        "$orderby=",
        "$count=",
        "$foo=",
        "a eq 1",
        "'x;)'",
        "1",
        "true",
        "desc",
        "name",
        ",",
        "Thing/",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["$filter", "$orderby", "$select", "$expand", "$top", "$skip", "$count", "$resultFormat"]),
    st.one_of(st.text(), st.lists(_SOUP, max_size=25).map("".join)),
)
def test_arbitrary_values_raise_only_query_syntax_errors(key: str, text: str) -> None:
    try:
        parse_options({key: text})
    except QuerySyntaxError as err:
        assert err.details["option"] == key


_FILTER_TEXTS = ["result gt 1", "name eq 'a;b)'", "substringof('x', description)", "not (id eq 3)"]
_TEXT_OF = {parse_filter(text): text for text in _FILTER_TEXTS}
_RELATIONS = ["Datastreams", "Observations", "Thing", "Locations", "Sensor", "ObservedProperty"]


def _options(depth: int) -> st.SearchStrategy[QueryOptions]:
    expands: st.SearchStrategy[tuple[Expand, ...]] = st.just(())
    if depth > 0:
        expands = st.lists(
            st.tuples(st.sampled_from(_RELATIONS), _options(depth - 1)), max_size=3, unique_by=lambda t: t[0]
        ).map(lambda items: tuple(Expand(rel, opts) for rel, opts in items))
    return st.builds(
        QueryOptions,
        filter=st.none() | st.sampled_from(list(_TEXT_OF)),
        top=st.none() | st.integers(0, 10**6),
        skip=st.none() | st.integers(0, 10**6),
        count=st.none() | st.booleans(),
        select=st.none()
        | st.lists(st.sampled_from(["name", "id", "@iot.id", "result"]), min_size=1, unique=True).map(tuple),
        orderby=st.just(()),
        expand=expands,
    )


def _render(items: tuple[Expand, ...]) -> str:
    parts = []
    for item in items:
        o = item.options
        opts = [f"$filter={_TEXT_OF[o.filter]}"] if o.filter is not None else []
        opts += [f"$top={o.top}"] if o.top is not None else []
        opts += [f"$skip={o.skip}"] if o.skip is not None else []
        opts += [f"$count={'true' if o.count else 'false'}"] if o.count is not None else []
        opts += [f"$select={','.join(o.select)}"] if o.select is not None else []
        opts += [f"$expand={_render(o.expand)}"] if o.expand else []
        parts.append(item.relation + (f"({';'.join(opts)})" if opts else ""))
    return ",".join(parts)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_options(3).filter(lambda o: bool(o.expand)))
def test_generated_expands_round_trip(options: QueryOptions) -> None:
    assert parse_expand(_render(options.expand)) == options.expand
