import random
import statistics

import pytest

from stadsdata.apps.cycling.eta import ArrivalEstimator, Fix, LaneMatcher
from stadsdata.apps.cycling.topology import Intersection

from .conftest import fix_at


def test_matches_the_lane_and_the_distance(intersection: Intersection) -> None:
    matcher = LaneMatcher(intersection)
    for lane_id, group in (("south-cycle-0", "22"), ("north-east-cycle-0", "28")):
        m = matcher.match(fix_at(intersection, lane_id, 60.0, 0, 5.0))
        assert m is not None
        assert (m.lane.id, m.lane.signal_group) == (lane_id, group)
        assert m.distance == pytest.approx(60.0, abs=0.01)
        assert m.offset < 0.01


def test_past_the_stop_line_is_negative(intersection: Intersection) -> None:
    m = LaneMatcher(intersection).match(fix_at(intersection, "south-cycle-0", -5.0, 0, 5.0))
    assert m is not None and m.distance == pytest.approx(-5.0, abs=0.01)
    assert LaneMatcher(intersection).match(fix_at(intersection, "south-cycle-0", -30.0, 0, 5.0)) is None


def test_riding_away_does_not_match(intersection: Intersection) -> None:
    toward = fix_at(intersection, "south-cycle-0", 60.0, 0, 5.0)
    assert toward.heading is not None
    away = Fix(toward.station, 0, toward.lon, toward.lat, 5.0, (toward.heading + 180) % 360)
    assert LaneMatcher(intersection).match(away) is None
    # Standing still, the heading of a phone means nothing: the position decides.
    standing = Fix(toward.station, 0, toward.lon, toward.lat, 0.2, (toward.heading + 180) % 360)
    assert LaneMatcher(intersection).match(standing) is not None


def test_far_from_every_lane_does_not_match(intersection: Intersection) -> None:
    lon, lat = intersection.projection.to_lonlat(-80.0, 60.0)
    assert LaneMatcher(intersection).match(Fix("x", 0, lon, lat, 5.0, 30.0)) is None


def test_eta_converges_under_gnss_noise() -> None:
    rng = random.Random(7)
    errors = []
    for run in range(50):
        est = ArrivalEstimator()
        speed = 4.0 + run % 4 * 0.5
        estimate = None
        for t in range(12):
            true = 120 - speed * t
            estimate = est.update(float(t), true + rng.gauss(0, 4.0), speed + rng.gauss(0, 0.5))
        assert estimate is not None and estimate.eta is not None
        true_eta = (120 - speed * 11) / speed
        errors.append(estimate.eta - true_eta)
    # After 12 noisy fixes the arrival time is known to within a couple of seconds, without bias.
    assert abs(statistics.fmean(errors)) < 1.0
    assert statistics.pstdev(errors) < 2.0


def test_eta_without_speed_uses_positions() -> None:
    est = ArrivalEstimator()
    for t in range(10):
        estimate = est.update(float(t), 100 - 5.0 * t, None)
    assert estimate.speed == pytest.approx(5.0, abs=0.5)
    assert estimate.eta == pytest.approx(55 / 5.0, abs=1.5)


def test_a_stop_is_seen_and_has_no_eta() -> None:
    rng = random.Random(3)
    est = ArrivalEstimator()
    distance, t = 80.0, 0.0
    for _ in range(8):
        est.update(t, distance + rng.gauss(0, 3.0), 5.0 + rng.gauss(0, 0.4))
        distance -= 5.0
        t += 1
    stopped = None
    for _ in range(6):
        stopped = est.update(t, distance + rng.gauss(0, 3.0), max(0.0, rng.gauss(0, 0.3)))
        t += 1
    assert stopped is not None and stopped.stopped and stopped.eta is None
    for _ in range(5):
        distance -= 4.0
        moving = est.update(t, distance + rng.gauss(0, 3.0), 4.0 + rng.gauss(0, 0.4))
        t += 1
    assert not moving.stopped and moving.eta is not None
