"""Rendering parsed options back to text keeps their meaning: parse(render(parse(q))) == parse(q)."""

from __future__ import annotations

import pytest

from stadsdata.query.options import parse_options
from stadsdata.query.render import render_options

QUERIES = [
    {"$filter": "result gt 3 and not (name eq 'it''s')"},
    {"$filter": "(result add 2) mul 3 sub -4 div 2 mod 5 ge 1.5e3 or result eq null"},
    {"$filter": "phenomenonTime gt 2026-11-22T10:00:00+01:00 and resultTime lt 2026-11-22T10:00:00.123456Z"},
    {"$filter": "phenomenonTime sub duration'P1DT2H3M4.5S' gt now() and duration'-PT1S' lt duration'PT0S'"},
    {"$filter": "st_within(location, geography'POLYGON((6 52, 7 52, 7 53, 6 53, 6 52))')"},
    {"$filter": "geo.distance(location, geography'POINT(6.89 52.22)') lt 0.01"},
    {"$filter": "substringof('a', tolower(name)) and length(trim(concat(name, 'x'))) eq 3"},
    {"$filter": "year(phenomenonTime) eq 2026 and date(phenomenonTime) eq 2026-11-22"},
    {"$filter": "time(phenomenonTime) lt 12:00:00 and true and not false"},
    {"$filter": "Datastream/Thing/properties/buurt eq 'Roombeek' and properties/levels/0 eq 1"},
    {"$orderby": "phenomenonTime desc,@iot.id asc", "$select": "id,result", "$top": "3", "$skip": "2"},
    {"$expand": "Datastreams($filter=name eq 'x';$orderby=name desc;$top=2;$expand=Observations($count=true))"},
    {"$expand": "Datastreams/Observations($select=result;$resultFormat=dataArray),Locations", "$count": "false"},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_rendered_options_parse_to_the_same_options(query: dict[str, str]) -> None:
    options = parse_options(query)
    assert parse_options(render_options(options)) == options
