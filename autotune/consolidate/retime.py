"""Re-timing configs in interleaved rounds (A B C, B C A, ...), so drift hits them all alike."""

from __future__ import annotations

import statistics
from typing import Collection, Iterable, Optional, Sequence

from autotune.bench.protocol import Benchmarker, Measurement, OutOfContest, Rounds, measure_interleaved
from autotune.problem.space import Config, SearchSpace

# A contender stops being re-timed once its fastest round trails the leader's slowest by more
# than this: it can no longer win. Offline, on the stored consolidations of GPU tunes, 1% changed
# no pick and saved 6% of the re-timings, twice: 21 tunes up to session 8 (301 buckets,
# benchmarks/fidelity_h200/retime_drop_8.md; without a margin 9 picks changed, by up to 1.7%)
# and the 16 since (288 buckets, benchmarks/speed/retime_beaten_13.md).
BEATEN_MARGIN = 0.01
# After the rounds asked for, up to MORE_ROUNDS more while they disagree: while a config still
# timed, within NEAR_LEADER of the leader, has rounds more than DISAGREE apart ((max - min) /
# median), a median of so few rounds can be one slow round's. Replayed over 679 stored buckets
# (benchmarks/speed/retime_protocols_15.md), 3 rounds with this took 35% fewer re-timings than 5
# at a mean loss 0.005% higher; 3 alone, 40% fewer at 0.014% higher, and on an H200 (bf16
# M=1536) wrote a GROUP_SIZE_M variant 2.4% slower after one of three rounds read 5% slow.
MORE_ROUNDS = 2
DISAGREE = 0.02
NEAR_LEADER = 0.01
# The rounds asked for when `retime_rounds` is left unset: one fewer up to this batch size. Replayed
# over the same 679 buckets (benchmarks/speed/retime_protocols_18.md), 2 rounds (and the 2 more
# where they disagree) picked as well as 3 up to M=512, where a third of a bf16 tune's re-timing
# GPU time goes (mean loss 0.012% and 0.033% against 0.014% and 0.030%); above it the rounds drift,
# and 2 lost more (0.26% against 0.23%).
FEWER_ROUNDS_MAX_M = 512


def rounds_at(M: int, asked: Optional[int]) -> int:
    """The re-timing rounds of bucket M: `asked` (the `retime_rounds` setting), or when unset 2 up
    to FEWER_ROUNDS_MAX_M and 3 above."""
    if asked is not None:
        return asked
    return 2 if M <= FEWER_ROUNDS_MAX_M else 3


# -- interleaved re-timing -------------------------------------------------------------------------
def retime(bench: Benchmarker, configs: Sequence[Config], M: int, rounds: int,
           contenders: Collection[int] = ()) -> list[dict]:
    """Time each config once per round, every round starting one config later (A B C, B C A, ...)
    so that drift in clocks or temperature falls on all alike; the median per config. With
    `contenders` (indices: tuned finalists), those stop once beaten (`beaten`) while the others,
    baselines and anchors, get every round; and all get up to MORE_ROUNDS more rounds while the
    rounds disagree (`disagreeing`). A benchmarker that times the rounds in one request times
    them all.

    Returns per config {"us", "spread", "samples"}, or {"us": None, "reason"} when it failed.
    """
    bench.prepare(configs, M)
    out = _out_of_contest(contenders, rounds) if contenders else None
    total = rounds + MORE_ROUNDS if contenders else rounds
    if isinstance(bench, Rounds):
        timings = bench.measure_rounds(configs, M, total, out)
    else:
        timings = measure_interleaved(bench, configs, M, total, out)
    return [_timing(t) for t in timings]


def _out_of_contest(contenders: Collection[int], rounds: int) -> OutOfContest:
    """The beaten contenders; after `rounds` rounds, every config unless the rounds disagree."""
    drop = beaten(contenders)

    def out(timings: list[list[Measurement]]) -> set[int]:
        gone = drop(timings)
        if max(map(len, timings)) >= rounds and not disagreeing(timings, gone):
            return set(range(len(timings)))
        return gone
    return out


def disagreeing(timings: list[list[Measurement]], gone: Collection[int] = (),
                near: float = NEAR_LEADER, apart: float = DISAGREE) -> bool:
    """Whether a config still timed, within `near` of the leader, has rounds more than `apart`
    apart."""
    timed = _timed(timings, gone)
    if not timed:
        return False
    lead = min(statistics.median(us) for us in timed.values())
    return any((max(us) - min(us)) / statistics.median(us) > apart
               for us in timed.values() if statistics.median(us) <= lead * (1 + near))


def beaten(contenders: Collection[int], margin: float = BEATEN_MARGIN) -> OutOfContest:
    """The contenders that can no longer win: their fastest round so far is more than `margin`
    slower than the slowest of the leader (the lowest median among the configs still timed)."""
    def out(timings: list[list[Measurement]]) -> set[int]:
        timed = _timed(timings)
        if not timed or max(map(len, timed.values())) < 2:  # one round tells no spread
            return set()
        leader = min(timed, key=lambda i: statistics.median(timed[i]))
        ceiling = max(timed[leader]) * (1 + margin)
        return {i for i in contenders if i in timed and min(timed[i]) > ceiling}
    return out


def _timed(timings: list[list[Measurement]], gone: Collection[int] = ()) -> dict[int, list[float]]:
    """The configs timed in every round so far (none failed, none out), by index."""
    ok = {i: [float(m.us) for m in t] for i, t in enumerate(timings)  # type: ignore[arg-type]
          if t and i not in gone and all(m.ok for m in t)}
    rounds = max(map(len, ok.values()), default=0)
    return {i: us for i, us in ok.items() if len(us) == rounds}


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
