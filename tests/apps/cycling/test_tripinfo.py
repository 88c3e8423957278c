"""Trips as SUMO 1.28 writes them (tripinfo-sample.xml is a few lines of a real run's output)."""

from pathlib import Path

import pytest

from stadsdata.apps.cycling.evaluate import run_metrics
from stadsdata.apps.cycling.simulation import RunConfig, RunResult, parse_tripinfo

SAMPLE = Path(__file__).with_name("tripinfo-sample.xml")


def test_parse() -> None:
    trips = parse_tripinfo(SAMPLE, {"bicycle_N2C_C2S_1.0"})
    assert [t.vtype for t in trips] == ["car", "car", "bicycle", "bicycle"]
    car = trips[0]
    assert (car.id, car.depart, car.duration, car.time_loss) == ("car_E2C_C2W_2.0", 3.0, 43.5, 1.0)
    assert car.waiting_count == 0
    assert car.depart_delay == pytest.approx(0.24)
    assert [t.app for t in trips] == [False, False, False, True]
    assert trips[3].waiting_count > 0 and trips[2].waiting_count == 0


def test_metrics_of_a_run() -> None:
    trips = parse_tripinfo(SAMPLE)
    m = run_metrics(RunResult(RunConfig(seed=1), trips, 120.0, 1.0))
    assert m["cyclists_stopped"] == 50.0
    assert m["car_delay"] == pytest.approx((1.0 + 2.23) / 2)
    assert m["cyclist_delay"] == pytest.approx((trips[2].time_loss + trips[3].time_loss) / 2)
