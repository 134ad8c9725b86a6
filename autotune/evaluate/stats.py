"""Summaries of the evaluation's runs: percentiles, the per-table report and the machine-readable line."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional, Sequence

THRESHOLDS = (0.01, 0.02)
REGRET_AT = (16, 32, 64)


@dataclass
class Run:
    """One repeat on one table."""

    table: str
    M: int
    seed: int
    trace: list[float]  # recorded time of the study's best config after each measurement
    sources: list[str]  # where each measured config came from (prior, sampler, ...)
    pruned: int
    gpu_ms: float
    stop: str
    best_us: float  # the table's best

    def evals_to(self, within: float) -> Optional[int]:
        for n, us in enumerate(self.trace, 1):
            if us <= self.best_us * (1 + within):
                return n
        return None

    def regret_at(self, n: int) -> float:
        if not self.trace:
            return math.inf
        return self.trace[min(n, len(self.trace)) - 1] / self.best_us - 1


# -- statistics ------------------------------------------------------------------------------------
def percentile(values: Sequence[Optional[float]], q: float) -> float:
    """Linear-interpolated percentile; None (a miss) counts as infinitely many measurements."""
    xs = sorted(math.inf if v is None else float(v) for v in values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if xs[hi] == math.inf and pos > lo or xs[lo] == math.inf:
        return math.inf
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for within in THRESHOLDS:
        n = [r.evals_to(within) for r in runs]
        tag = f"{round(within * 100)}pct"
        out[f"median_evals_to_{tag}"] = percentile(n, 50)
        out[f"p90_evals_to_{tag}"] = percentile(n, 90)
        out[f"miss_rate_{tag}"] = sum(v is None for v in n) / len(n)
    for k in REGRET_AT:
        out[f"mean_regret_at_{k}"] = statistics.fmean(r.regret_at(k) for r in runs)
    out["mean_measurements"] = statistics.fmean(len(r.trace) for r in runs)
    out["mean_gpu_ms"] = statistics.fmean(r.gpu_ms for r in runs)
    out["mean_pruned"] = statistics.fmean(r.pruned for r in runs)
    return out


def summary_line(result: dict[str, Any]) -> str:
    o = result["overall"]
    return (f"median_evals_to_1pct={_num(o['median_evals_to_1pct'])} "
            f"p90_evals_to_1pct={_num(o['p90_evals_to_1pct'])} "
            f"miss_rate={o['miss_rate_1pct']:.3f} "
            f"median_evals_to_2pct={_num(o['median_evals_to_2pct'])} "
            f"p90_evals_to_2pct={_num(o['p90_evals_to_2pct'])} "
            f"miss_rate_2pct={o['miss_rate_2pct']:.3f} "
            f"regret16={o['mean_regret_at_16']:.4f} regret32={o['mean_regret_at_32']:.4f} "
            f"regret64={o['mean_regret_at_64']:.4f} "
            f"mean_measurements={o['mean_measurements']:.1f} mean_gpu_ms={o['mean_gpu_ms']:.1f} "
            f"random_median_evals_to_1pct={_num(o['random_median_evals_to_1pct'])} "
            f"random_p90_evals_to_1pct={_num(o['random_p90_evals_to_1pct'])} "
            f"tables={result['tables']} repeats={result['repeats']}")


def report(result: dict[str, Any]) -> str:
    budget = result["settings"]["budget"]
    head = (f"{'table':<46} {'M':>5} | {'med1%':>6} {'p90':>6} {'miss':>5} | {'med2%':>6} "
            f"{'p90':>6} {'miss':>5} | {'reg@16':>7} {'reg@32':>7} {'reg@64':>7} | {'meas':>5} "
            f"{'gpu_ms':>7} | random {'med1%':>6} {'p90':>6} miss@{budget}")
    lines = [head, "-" * len(head)]
    for name, t in result["per_table"].items():
        lines.append(
            f"{name[:46]:<46} {t['M']:>5} | {_num(t['median_evals_to_1pct']):>6} "
            f"{_num(t['p90_evals_to_1pct']):>6} {t['miss_rate_1pct']:>5.2f} | "
            f"{_num(t['median_evals_to_2pct']):>6} {_num(t['p90_evals_to_2pct']):>6} "
            f"{t['miss_rate_2pct']:>5.2f} | {t['mean_regret_at_16']:>7.4f} "
            f"{t['mean_regret_at_32']:>7.4f} {t['mean_regret_at_64']:>7.4f} | "
            f"{t['mean_measurements']:>5.1f} {t['mean_gpu_ms']:>7.1f} | "
            f"       {_num(t['random_median_evals_to_1pct']):>6} "
            f"{_num(t['random_p90_evals_to_1pct']):>6} {t['random_miss_rate_1pct']:.2f}")
    return "\n".join(lines)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:g}" if x == int(x) else f"{x:.1f}"


def finite(x: Any) -> Any:
    """inf (a miss) as null: JSON has no infinity."""
    if isinstance(x, float) and math.isinf(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
