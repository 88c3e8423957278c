"""The SUMO scenario end to end: a few simulated minutes, and the direction of the effects."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from stadsdata.apps.cycling import simulation
from stadsdata.apps.cycling.evaluate import evaluate, variants
from stadsdata.apps.cycling.simulation import SumoMissing, load_scenario
from stadsdata.cli import main

try:
    simulation.load_libsumo()
except SumoMissing:
    pytest.skip("SUMO is not installed (pip install 'stadsdata[cycling]')", allow_module_level=True)


def short(warmup: float = 60.0) -> simulation.Scenario:
    scenario = load_scenario("hengelosestraat")
    return dataclasses.replace(scenario, config={**scenario.config, "warmup": warmup})


def test_priority_at_full_penetration_stops_fewer_cyclists(tmp_path: Path) -> None:
    result = evaluate(short(), [0.0, 1.0], [20.0], seeds=3, hours=600 / 3600, workdir=tmp_path, progress=False)
    baseline, full = variants([0.0, 1.0], [20.0])
    stopped_before = result.interval(baseline, "cyclists_stopped").mean
    stopped_after = result.interval(full, "cyclists_stopped").mean
    assert stopped_after < stopped_before
    assert result.interval(full, "cyclist_delay").mean < result.interval(baseline, "cyclist_delay").mean
    runs = result.rows[full]
    assert all(r["requested"] > 0 and r["served"] > 0 for r in runs)
    assert all(r["requested"] == 0 for r in result.rows[baseline])
    # Every run counted trips of both kinds from SUMO's tripinfo.
    assert all(r["car_delay"] >= 0 for rs in result.rows.values() for r in rs)


def test_topology_stop_lines_are_sumo_lane_ends(tmp_path: Path) -> None:
    scenario = short()
    sumo = simulation.load_libsumo()
    sumo.start(["sumo", "-n", str(simulation.build_network(scenario, tmp_path)), "--no-step-log", "true"])
    try:
        intersection = scenario.intersection
        proj = intersection.projection
        for _, lane in intersection.lanes():
            assert lane.sumo_lane is not None
            x, y = sumo.lane.getShape(lane.sumo_lane)[-1]
            ex, ey = proj.to_metres(*sumo.simulation.convertGeo(x, y))
            sx, sy = proj.to_metres(*lane.stop_line)
            assert ((ex - sx) ** 2 + (ey - sy) ** 2) ** 0.5 < 0.5, lane.id
    finally:
        sumo.close()


def test_cli_writes_table_plot_and_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["cycling", "evaluate", "hengelosestraat", "--rates", "0,100", "--seeds", "1", "--hours", "0.05"]
    assert main([*args, "--out", str(out), "--no-progress", "--jobs", "2"]) == 0  # two worker processes
    printed = capsys.readouterr().out
    assert "| baseline (no app) |" in printed and "| 100 % app, window 20 s |" in printed
    for name in ("cycling-evaluation.md", "cycling-evaluation.png", "cycling-evaluation.svg", "cycling-runs.csv"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "cycling-evaluation.json").read_text())
    assert [r["penetration"] for r in data["results"]] == [0.0, 1.0]
    assert (out / "cycling-evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_sumo_the_cli_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "libsumo", None)
    assert main(["cycling", "evaluate", "hengelosestraat"]) == 2
    assert "pip install 'stadsdata[cycling]'" in capsys.readouterr().err


def test_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cycling", "evaluate", "nowhere"]) == 2
    assert "hengelosestraat" in capsys.readouterr().err
