import json
from pathlib import Path

import pytest

from stadsdata.apps.cycling.topology import Intersection, TopologyError, load, parse

from .conftest import SCENARIO


def test_bundled_intersection(intersection: Intersection) -> None:
    assert intersection.id == "enschede-hengelosestraat-alleeweg"
    assert [g.id for g in intersection.signal_groups] == ["02", "08", "11", "22", "28"]
    cycle = {lane.id: lane.signal_group for _, lane in intersection.lanes("cycle")}
    assert cycle == {"south-cycle-0": "22", "north-east-cycle-0": "28"}


def test_stop_lines_are_near_the_centre(intersection: Intersection) -> None:
    proj = intersection.projection
    for _, lane in intersection.lanes():
        x, y = proj.to_metres(*lane.stop_line)
        assert 3 < (x * x + y * y) ** 0.5 < 20, lane.id


def test_round_trip(intersection: Intersection) -> None:
    assert parse(json.loads(json.dumps(intersection.to_json()))) == intersection


def _broken(tmp_path: Path, change: object) -> Path:
    data = json.loads((SCENARIO / "intersection.json").read_text())
    change(data)  # type: ignore[operator]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("signal_groups"), "'signal_groups' must be a non-empty list"),
        (lambda d: d["approaches"][2]["lanes"][1].update(signal_group="99"), "approaches[2].lanes[1].signal_group"),
        (lambda d: d["approaches"][0]["lanes"][0].update(kind="tram"), "'kind' must be one of"),
        (lambda d: d["approaches"][0]["lanes"][0].update(path=[[6.8, 52.2]]), "at least two points"),
        (lambda d: d["approaches"][0]["lanes"][0]["path"].__setitem__(1, [52.2, 600]), "outside WGS84"),
        (lambda d: d["approaches"][1]["lanes"][1].update(id="east-car-0"), "is used twice"),
    ],
)
def test_errors_name_the_place(tmp_path: Path, change: object, message: str) -> None:
    with pytest.raises(TopologyError) as e:
        load(_broken(tmp_path, change))
    assert message in str(e.value)
    assert str(tmp_path) in str(e.value)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{ nope")
    with pytest.raises(TopologyError, match="not JSON"):
        load(path)


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stadsdata.cli import main

    assert main(["cycling", "intersections", "check", str(SCENARIO / "intersection.json")]) == 0
    out = capsys.readouterr().out
    assert "south-cycle-0 (cycle, group 22)" in out
    broken = _broken(tmp_path, lambda d: d["approaches"][0].pop("lanes"))
    assert main(["cycling", "intersections", "check", str(broken)]) == 2
    assert "approaches[0]: 'lanes' must be a non-empty list" in capsys.readouterr().err
