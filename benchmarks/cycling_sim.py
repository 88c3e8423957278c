"""Simulation speed of the cycling evaluation: simulated hours per wall-clock second for one junction.

    python -m benchmarks.cycling_sim                 # 1 simulated hour each: baseline, 50 % and 100 % app
    python -m benchmarks.cycling_sim --hours 0.25 --seeds 1

Runs the bundled Hengelosestraat scenario in SUMO (libsumo, in this process) with the actuated
controller, and with the app at 50 % and 100 % penetration (the position reports, lane matching,
arrival estimation and priority requests of every app user, once a second). The goal is at least
100× real time, so that an evaluation of 5 seeds × 8 variants × 1 hour takes minutes. Building the
network with netconvert happens once, before timing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stadsdata.apps.cycling.simulation import RunConfig, build_network, load_scenario, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per run after the warm-up")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    scenario = load_scenario("hengelosestraat")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_network(scenario, work)
        print(f"{scenario.name}: {args.hours:g} h after {scenario.warmup:g} s warm-up, step {scenario.step_length:g} s")
        print(f"{'variant':<18} {'simulated h':>12} {'wall s':>8} {'sim h per wall s':>17} {'× real time':>12}")
        for penetration in (0.0, 0.5, 1.0):
            simulated = wall = 0.0
            for seed in range(1, args.seeds + 1):
                result = run(scenario, RunConfig(seed=seed, penetration=penetration, duration=args.hours * 3600), work)
                simulated += result.simulated
                wall += result.wall
            label = "baseline (no app)" if penetration == 0 else f"{penetration * 100:g} % app"
            hours = simulated / 3600
            print(f"{label:<18} {hours:>12.2f} {wall:>8.2f} {hours / wall:>17.3f} {simulated / wall:>11.0f}×")


if __name__ == "__main__":
    main()
