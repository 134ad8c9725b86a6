"""Re-timing configs in interleaved rounds (A B C, B C A, ...), so drift hits them all alike."""

from __future__ import annotations

import statistics
from typing import Iterable, Optional, Sequence

from autotune.bench.protocol import Benchmarker
from autotune.problem.space import Config, SearchSpace


# -- interleaved re-timing -------------------------------------------------------------------------
def retime(bench: Benchmarker, configs: Sequence[Config], M: int, rounds: int) -> list[dict]:
    """Time each config once per round, every round starting one config later (A B C, B C A, ...)
    so that drift in clocks or temperature falls on all alike; the median per config.

    Returns per config {"us", "spread", "samples"}, or {"us": None, "reason"} when it failed.
    """
    bench.prepare(configs, M)
    n = len(configs)
    samples: list[list[float]] = [[] for _ in configs]
    failed: list[Optional[str]] = [None] * n
    for r in range(rounds):
        for i in [(r + j) % n for j in range(n)]:
            if failed[i] is None:
                m = bench.measure(configs[i], M)
                if m.ok:
                    samples[i].append(float(m.us))  # type: ignore[arg-type]
                else:
                    failed[i] = m.infeasible or "failed"
    return [_timing(s, f) for s, f in zip(samples, failed)]


def _timing(samples: list[float], reason: Optional[str]) -> dict:
    if reason is not None or not samples:
        return {"us": None, "reason": reason or "not timed"}
    median = statistics.median(samples)
    return {"us": median, "spread": (max(samples) - min(samples)) / median, "samples": samples}


def unique_configs(configs: Iterable[Config]) -> list[Config]:
    seen: dict[tuple, Config] = {}
    for c in configs:
        seen.setdefault(SearchSpace.key(c), c)
    return list(seen.values())
