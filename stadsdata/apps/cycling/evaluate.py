"""The evaluation: a scenario run for the baseline and for app penetration rates × request windows × seeds.

Every figure comes from SUMO's own trip output (tripinfo): a trip's ``timeLoss`` (time lost
against driving at the vehicle's desired speed) is its delay, and a trip with
``waitingCount`` > 0 (it stood still at least once) counts as *stopped*. Per run the mean over
the trips that started after the warm-up is taken; across seeds, the mean and a 95 %
confidence interval (Student's t over the seeds' means).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import statistics
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stadsdata.apps.cycling.simulation import RunConfig, RunResult, Scenario, build_network, run

METRICS: dict[str, tuple[str, str]] = {
    "cyclist_delay": ("cyclist delay", "s"),
    "cyclists_stopped": ("cyclists stopped", "%"),
    "car_delay": ("car delay", "s"),
}

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
        2.042)  # fmt: skip


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Interval:
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, 0)
        mean = statistics.fmean(clean)
        if len(clean) < 2:
            return cls(mean, math.nan, math.nan, len(clean))
        half = t95(len(clean) - 1) * statistics.stdev(clean) / math.sqrt(len(clean))
        return cls(mean, mean - half, mean + half, len(clean))

    def text(self, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "–"
        if math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {(self.high - self.low) / 2:.{digits}f}"


def run_metrics(result: RunResult) -> dict[str, float]:
    bikes = result.of("bicycle")
    cars = result.of("car")
    return {
        "cyclist_delay": statistics.fmean(t.time_loss for t in bikes) if bikes else math.nan,
        "cyclists_stopped": 100 * statistics.fmean(t.waiting_count > 0 for t in bikes) if bikes else math.nan,
        "car_delay": statistics.fmean(t.time_loss for t in cars) if cars else math.nan,
    }


@dataclass(frozen=True)
class Variant:
    """One row of the table: the baseline (penetration 0) or a penetration rate with a request window."""

    penetration: float
    window: float

    @property
    def label(self) -> str:
        if self.penetration == 0:
            return "baseline (no app)"
        return f"{self.penetration * 100:g} % app, window {self.window:g} s"


def variants(rates: Iterable[float], windows: Iterable[float]) -> list[Variant]:
    """The baseline once, then every rate above 0 with every window (a window means nothing without app users)."""
    ws = list(windows)
    out = [Variant(0.0, ws[0])]
    out += [Variant(r, w) for r in rates if r > 0 for w in ws]
    return out


@dataclass
class Evaluation:
    scenario: str
    hours: float
    seeds: list[int]
    rows: dict[Variant, list[dict[str, float]]]
    simulated: float = 0.0
    wall: float = 0.0

    def interval(self, variant: Variant, metric: str) -> Interval:
        return Interval.of([m[metric] for m in self.rows[variant]])

    def table(self) -> str:
        """A Markdown table: mean ± half-width of the 95 % confidence interval over seeds."""
        header = ["variant", *(f"{name} ({unit})" for name, unit in METRICS.values()), "requests per hour",
                  "answers granted"]  # fmt: skip
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for variant, runs in self.rows.items():
            cells = [variant.label] + [self.interval(variant, m).text() for m in METRICS]
            if variant.penetration > 0:
                requests = sum(r.get("requested", 0) for r in runs) / (self.hours * len(runs))
                granted = sum(r.get("granted", 0) for r in runs)
                answers = granted + sum(r.get("rejected", 0) for r in runs)
                cells += [f"{requests:.0f}", f"{100 * granted / answers:.0f} %" if answers else "–"]
            else:
                cells += ["–", "–"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "hours": self.hours,
            "seeds": self.seeds,
            "simulated_seconds": self.simulated,
            "wall_seconds": self.wall,
            "results": [
                {
                    "penetration": v.penetration,
                    "window": v.window,
                    "label": v.label,
                    **{
                        m: {"mean": i.mean, "ci95_low": i.low, "ci95_high": i.high, "n": i.n}
                        for m in METRICS
                        for i in [self.interval(v, m)]
                    },
                    "runs": runs,
                }
                for v, runs in self.rows.items()
            ],
        }

    def write(self, out: Path, formats: Iterable[str] = ("png", "svg")) -> list[Path]:
        """The table (Markdown), the numbers (JSON, CSV per run) and the plot into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "cycling-evaluation.md", out / "cycling-evaluation.json", out / "cycling-runs.csv"]
        written[0].write_text(f"# {self.scenario}\n\n{self.table()}\n", encoding="utf-8")
        written[1].write_text(json.dumps(_finite(self.to_json()), indent=2) + "\n", encoding="utf-8")
        with written[2].open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            counts = ("requested", "granted", "rejected", "served", "cancelled")
            w.writerow(["penetration", "window", "seed", *METRICS, *counts])
            for v, runs in self.rows.items():
                for seed, r in zip(self.seeds, runs, strict=False):
                    w.writerow([v.penetration, v.window, seed, *(f"{r[m]:.3f}" for m in METRICS),
                                *(int(r.get(c, 0)) for c in counts)])  # fmt: skip
        written += plot(self, out / "cycling-evaluation", formats)
        return written


def _finite(value: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def evaluate(
    scenario: Scenario,
    rates: list[float],
    windows: list[float],
    seeds: int,
    hours: float,
    workdir: Path,
    progress: bool = True,
    jobs: int = 1,
) -> Evaluation:
    """Run every variant with every seed. libsumo runs one simulation per process, so ``jobs`` > 1 runs that many
    worker processes; with 1, everything runs in this process."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    seed_list = list(range(1, seeds + 1))
    grid = variants(rates, windows)
    tasks = [
        (variant, RunConfig(seed=seed, penetration=variant.penetration, window=variant.window, duration=hours * 3600))
        for seed in seed_list
        for variant in grid
    ]
    build_network(scenario, workdir)  # once, before any worker needs it
    done: dict[tuple[Variant, int], _Outcome] = {}
    with tqdm(total=len(tasks), disable=not progress, unit="run", desc="simulating") as bar:

        def record(variant: Variant, outcome: _Outcome) -> None:
            done[(variant, outcome.seed)] = outcome
            bar.set_postfix_str(f"{variant.label}, seed {outcome.seed}")
            bar.update()

        if jobs <= 1:
            for variant, config in tasks:
                record(variant, _simulate(scenario, config, workdir))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {pool.submit(_simulate, scenario, config, workdir): variant for variant, config in tasks}
                for future in as_completed(futures):
                    record(futures[future], future.result())
    evaluation = Evaluation(scenario.name, hours, seed_list, {v: [] for v in grid})
    for variant in grid:
        for seed in seed_list:
            outcome = done[(variant, seed)]
            evaluation.rows[variant].append(outcome.metrics)
            evaluation.simulated += outcome.simulated
            evaluation.wall += outcome.wall
    return evaluation


@dataclass(frozen=True)
class _Outcome:
    seed: int
    metrics: dict[str, float]
    simulated: float
    wall: float


def _simulate(scenario: Scenario, config: RunConfig, workdir: Path) -> _Outcome:
    result = run(scenario, config, workdir)
    metrics = run_metrics(result)
    metrics.update({k: float(v) for k, v in result.requests.items()})
    return _Outcome(config.seed, metrics, result.simulated, result.wall)


def plot(evaluation: Evaluation, stem: Path, formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    """Three panels (cyclist delay, cyclists stopped, car delay) against penetration, one line per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = next(v for v in evaluation.rows if v.penetration == 0)
    windows = sorted({v.window for v in evaluation.rows if v.penetration > 0})
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.8), constrained_layout=True)
    for ax, (metric, (name, unit)) in zip(axes, METRICS.items(), strict=True):
        for window in windows:
            points = [baseline] + sorted(
                (v for v in evaluation.rows if v.penetration > 0 and v.window == window), key=lambda v: v.penetration
            )
            xs = [100 * v.penetration for v in points]
            cis = [evaluation.interval(v, metric) for v in points]
            ys = [c.mean for c in cis]
            low = [c.mean - c.low if not math.isnan(c.low) else 0.0 for c in cis]
            high = [c.high - c.mean if not math.isnan(c.high) else 0.0 for c in cis]
            ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=f"window {window:g} s")
        ax.set_title(name)
        ax.set_xlabel("cyclists using the app (%)")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{evaluation.scenario}: {evaluation.hours:g} h × {len(evaluation.seeds)} seeds, 95 % CI", fontsize=10)
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=110)
        written.append(path)
    plt.close(fig)
    return written
