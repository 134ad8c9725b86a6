"""Re-timing configs in interleaved rounds (A B C, B C A, ...), so drift hits them all alike."""

from __future__ import annotations

import statistics
from typing import Iterable, Sequence

from autotune.bench.protocol import Benchmarker, Measurement, Rounds, measure_interleaved
from autotune.problem.space import Config, SearchSpace


# -- interleaved re-timing -------------------------------------------------------------------------
def retime(bench: Benchmarker, configs: Sequence[Config], M: int, rounds: int) -> list[dict]:
    """Time each config once per round, every round starting one config later (A B C, B C A, ...)
    so that drift in clocks or temperature falls on all alike; the median per config.

    Returns per config {"us", "spread", "samples"}, or {"us": None, "reason"} when it failed.
    """
    bench.prepare(configs, M)
    if isinstance(bench, Rounds):
        timings = bench.measure_rounds(configs, M, rounds)
    else:
        timings = measure_interleaved(bench, configs, M, rounds)
    return [_timing(t) for t in timings]


def _timing(timings: list[Measurement]) -> dict:
    failed = next((m for m in timings if not m.ok), None)
    if failed is not None:
        return {"us": None, "reason": failed.infeasible or "failed"}
    if not timings:
        return {"us": None, "reason": "not timed"}
    samples = [float(m.us) for m in timings]  # type: ignore[arg-type]
    median = statistics.median(samples)
    return {"us": median, "spread": (max(samples) - min(samples)) / median, "samples": samples}


def unique_configs(configs: Iterable[Config]) -> list[Config]:
    seen: dict[tuple, Config] = {}
    for c in configs:
        seen.setdefault(SearchSpace.key(c), c)
    return list(seen.values())
