"""What a benchmark run found: the table, the targets from issue 6, the JSON record and the plot.

Targets are reported (met / missed), never asserted: speed depends on the machine and on what
else it is doing, so a slow run is information, not a failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult

__all__ = [
    "Run",
    "Target",
    "evaluate_targets",
    "format_table",
    "format_targets",
    "marginal_costs_us",
    "median_round",
    "run_record",
    "sweep_slopes",
    "write_plot",
]

TYPICAL_MIN_RATIO = 0.30
TYPICAL_MAX_P99_MS = 15.0
HEAVY_MIN_RATIO = 0.20
MAX_RSS_MB = 200.0
# Log-log slope of latency against resource count; 1.0 is linear. The margin absorbs noise.
MAX_SWEEP_SLOPE = 1.15


@dataclass(frozen=True, slots=True)
class Run:
    """The service and the baseline under the same body and concurrency."""

    workload: str
    resources: int
    concurrency: int
    service: LoadResult
    baseline: LoadResult
    round_ratios: tuple[float, ...] = ()  # every round's ratio when the cell was measured several times
    rounds_service_requests: int | None = None  # the service's requests in every round, not only this one

    @property
    def service_requests(self) -> int:
        """Requests the service answered for this cell, over all its rounds (what its audit trail holds)."""
        return self.service.requests if self.rounds_service_requests is None else self.rounds_service_requests

    @property
    def ratio(self) -> float:
        """Service throughput as a fraction of the baseline's."""
        return self.service.rps / self.baseline.rps if self.baseline.rps else 0.0

    @property
    def cpu_ratio(self) -> float | None:
        """Baseline CPU per request as a fraction of the service's: the ratio with the machine's noise taken out."""
        service, baseline = self.service.cpu_ms_per_request, self.baseline.cpu_ms_per_request
        if not service or baseline is None:
            return None
        return baseline / service


def median_round(rounds: Sequence[Run]) -> Run:
    """The round with the median ratio (the lower middle one for an even count), keeping every ratio."""
    ordered = sorted(rounds, key=lambda r: r.ratio)
    chosen = ordered[(len(ordered) - 1) // 2]
    return Run(
        chosen.workload,
        chosen.resources,
        chosen.concurrency,
        chosen.service,
        chosen.baseline,
        round_ratios=tuple(round(r.ratio, 3) for r in rounds),
        rounds_service_requests=sum(r.service.requests for r in rounds),
    )


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    value: float | None
    limit: str
    met: bool | None  # None: not measured in this run


def run_record(run: Run) -> dict[str, Any]:
    def side(result: LoadResult) -> dict[str, Any]:
        cpu = result.cpu_ms_per_request
        return {**asdict(result), "rps": round(result.rps, 1), "cpu_ms_per_request": None if cpu is None else round(cpu, 3)}

    return {
        "workload": run.workload,
        "resources": run.resources,
        "concurrency": run.concurrency,
        "ratio": round(run.ratio, 3),
        "cpu_ratio": None if run.cpu_ratio is None else round(run.cpu_ratio, 3),
        "round_ratios": list(run.round_ratios),
        "service": side(run.service),
        "baseline": side(run.baseline),
    }


def format_table(runs: Sequence[Run]) -> str:
    header = (
        f"{'workload':<12} {'res':>6} {'c':>3} | {'svc req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>7} | "
        f"{'base req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>7} | {'ratio':>6} {'cpu':>6}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        s, b = run.service, run.baseline
        lines.append(
            f"{run.workload:<12} {run.resources:>6} {run.concurrency:>3} | {s.rps:>9.1f} {s.p50_ms:>8.2f} {s.p99_ms:>8.2f} "
            f"{_cpu(s):>7} | {b.rps:>10.1f} {b.p50_ms:>8.2f} {b.p99_ms:>8.2f} {_cpu(b):>7} | {run.ratio:>6.3f} "
            f"{'-' if run.cpu_ratio is None else format(run.cpu_ratio, '.3f'):>6}"
        )
    lines.append("ratio: service req/s / baseline req/s; cpu: baseline CPU ms per request / service CPU ms per request")
    return "\n".join(lines)


def _cpu(result: LoadResult) -> str:
    cpu = result.cpu_ms_per_request
    return "-" if cpu is None else f"{cpu:.3f}"


def sweep_slopes(points: Sequence[tuple[int, float]]) -> list[float]:
    """Log-log slope between consecutive (resources, latency) points: 1.0 is linear, 2.0 quadratic."""
    slopes = []
    for (n1, t1), (n2, t2) in zip(points, points[1:]):
        if n2 > n1 > 0 and t1 > 0 and t2 > 0:
            slopes.append(math.log(t2 / t1) / math.log(n2 / n1))
    return slopes


def marginal_costs_us(points: Sequence[tuple[int, float]]) -> list[float]:
    """Extra microseconds per extra resource between consecutive (resources, latency ms) points."""
    return [(t2 - t1) * 1000 / (n2 - n1) for (n1, t1), (n2, t2) in zip(points, points[1:]) if n2 > n1]


def evaluate_targets(
    runs: Sequence[Run], *, sweep_points: Sequence[tuple[int, float]], rss_after_heavy_mb: float | None
) -> list[Target]:
    """The issue-6 targets, each with the measured value and whether it was met."""
    typical_c8 = next((r for r in runs if r.workload == "typical" and r.concurrency == 8), None)
    heavy = [r for r in runs if r.workload == "heavy"]
    slopes = sweep_slopes(sweep_points)
    worst_heavy = min((r.ratio for r in heavy), default=None)
    return [
        Target(
            "typical c=8 throughput / baseline",
            typical_c8.ratio if typical_c8 else None,
            f">= {TYPICAL_MIN_RATIO}",
            typical_c8.ratio >= TYPICAL_MIN_RATIO if typical_c8 else None,
        ),
        Target(
            "typical c=8 p99 (ms)",
            typical_c8.service.p99_ms if typical_c8 else None,
            f"< {TYPICAL_MAX_P99_MS}",
            typical_c8.service.p99_ms < TYPICAL_MAX_P99_MS if typical_c8 else None,
        ),
        Target(
            "heavy throughput / baseline (worst concurrency)",
            worst_heavy,
            f">= {HEAVY_MIN_RATIO}",
            worst_heavy >= HEAVY_MIN_RATIO if worst_heavy is not None else None,
        ),
        Target(
            "sweep: steepest log-log slope of latency vs resources",
            max(slopes) if slopes else None,
            f"<= {MAX_SWEEP_SLOPE} (1.0 = linear)",
            max(slopes) <= MAX_SWEEP_SLOPE if slopes else None,
        ),
        Target(
            "service worker peak RSS after heavy (MiB)",
            rss_after_heavy_mb,
            f"< {MAX_RSS_MB:.0f}",
            rss_after_heavy_mb < MAX_RSS_MB if rss_after_heavy_mb is not None else None,
        ),
    ]


def format_targets(targets: Sequence[Target]) -> str:
    lines = []
    for target in targets:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target.met]
        value = "-" if target.value is None else f"{target.value:.3f}"
        lines.append(f"  {verdict:<12} {target.name}: {value} (target {target.limit})")
    return "\n".join(lines)


def write_plot(path: Path, *, runs: Sequence[Run], sweep_runs: Sequence[Run]) -> None:
    """Left: latency against prefetch size (the sweep). Right: throughput ratio per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    if sweep_runs:
        sizes = [r.resources for r in sweep_runs]
        left.loglog(sizes, [r.service.p50_ms for r in sweep_runs], "o-", label="service p50")
        left.loglog(sizes, [r.service.p99_ms for r in sweep_runs], "o--", label="service p99", alpha=0.6)
        left.loglog(sizes, [r.baseline.p50_ms for r in sweep_runs], "s-", label="baseline p50 (parse only)")
        largest = sweep_runs[-1]
        left.loglog(
            sizes,
            [largest.service.p50_ms * n / largest.resources for n in sizes],
            ":",
            color="grey",
            label="linear through the largest",
        )
        left.set_xlabel("resources in prefetch")
        left.set_ylabel("latency (ms)")
        left.set_title(f"sweep: latency vs prefetch size (c={sweep_runs[0].concurrency})")
        left.grid(True, which="both", alpha=0.3)
        left.legend()
    else:
        left.text(0.5, 0.5, "no sweep in this run", ha="center", va="center")
    main_runs = [r for r in runs if not r.workload.startswith("sweep-")]
    labels = [f"{r.workload}\nc={r.concurrency}" for r in main_runs]
    positions = range(len(main_runs))
    right.bar([p - 0.2 for p in positions], [r.ratio for r in main_runs], width=0.4, color="tab:blue", label="req/s ratio")
    right.bar(
        [p + 0.2 for p in positions], [r.cpu_ratio or 0 for r in main_runs], width=0.4, color="tab:cyan", label="CPU/request ratio"
    )
    right.set_xticks(list(positions), labels, fontsize=8)
    right.axhline(TYPICAL_MIN_RATIO, color="tab:green", linestyle="--", label=f"typical target {TYPICAL_MIN_RATIO}")
    right.axhline(HEAVY_MIN_RATIO, color="tab:orange", linestyle="--", label=f"heavy target {HEAVY_MIN_RATIO}")
    right.set_ylabel("service relative to baseline (1 = as cheap)")
    right.set_title("throughput relative to the parse-only baseline")
    right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
