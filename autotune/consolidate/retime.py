"""Re-timing configs in interleaved rounds (A B C, B C A, ...), so drift hits them all alike."""

from __future__ import annotations

import statistics
from typing import Collection, Iterable, Sequence

from autotune.bench.protocol import Benchmarker, Measurement, OutOfContest, Rounds, measure_interleaved
from autotune.problem.space import Config, SearchSpace

# A contender stops being re-timed once its fastest round trails the leader's slowest by more
# than this: it can no longer win. Offline, on the stored consolidations of GPU tunes, 1% changed
# no pick and saved 6% of the re-timings, twice: 21 tunes up to session 8 (301 buckets,
# benchmarks/fidelity_h200/retime_drop_8.md; without a margin 9 picks changed, by up to 1.7%)
# and the 16 since (288 buckets, benchmarks/speed/retime_beaten_13.md).
BEATEN_MARGIN = 0.01


# -- interleaved re-timing -------------------------------------------------------------------------
def retime(bench: Benchmarker, configs: Sequence[Config], M: int, rounds: int,
           contenders: Collection[int] = ()) -> list[dict]:
    """Time each config once per round, every round starting one config later (A B C, B C A, ...)
    so that drift in clocks or temperature falls on all alike; the median per config. The
    `contenders` (indices: tuned finalists) stop once beaten (`beaten`); the others, baselines
    and anchors, get every round.

    Returns per config {"us", "spread", "samples"}, or {"us": None, "reason"} when it failed.
    """
    bench.prepare(configs, M)
    out = beaten(contenders) if contenders else None
    if isinstance(bench, Rounds):
        timings = bench.measure_rounds(configs, M, rounds, out)
    else:
        timings = measure_interleaved(bench, configs, M, rounds, out)
    return [_timing(t) for t in timings]


def beaten(contenders: Collection[int], margin: float = BEATEN_MARGIN) -> OutOfContest:
    """The contenders that can no longer win: their fastest round so far is more than `margin`
    slower than the slowest of the leader (the lowest median among the configs still timed)."""
    def out(timings: list[list[Measurement]]) -> set[int]:
        timed = {i: [float(m.us) for m in t] for i, t in enumerate(timings)  # type: ignore[arg-type]
                 if t and all(m.ok for m in t)}
        if not timed:
            return set()
        rounds = max(map(len, timed.values()))
        alive = [i for i, us in timed.items() if len(us) == rounds]
        leader = min(alive, key=lambda i: statistics.median(timed[i]))
        ceiling = max(timed[leader]) * (1 + margin)
        return {i for i in contenders if i in alive and min(timed[i]) > ceiling}
    return out


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
