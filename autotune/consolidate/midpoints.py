"""The check between buckets: at the batch size halfway between two keys, is the neighbour's
entry faster than the one vLLM serves?"""

from __future__ import annotations

import logging
import time
from typing import Optional

import optuna

from autotune import wall_clock
from autotune.bench.protocol import Benchmarker
from autotune.consolidate.retime import retime
from autotune.problem.space import Config, SearchSpace
from autotune.study.records import StudyAttr

log = logging.getLogger(__name__)

# A neighbour's config must beat the served one by more than this (or the timings' spread) to be
# reported as better at a midpoint.
MIN_GAIN = 0.01


# -- between buckets -------------------------------------------------------------------------------
def check_midpoints(studies: dict[int, optuna.Study], entries: dict[int, Config],
                    bench: Optional[Benchmarker], rounds: int) -> list[dict]:
    """Time each pair of neighbouring entries at the batch size halfway between their keys.

    vLLM serves M tokens with the nearest key's entry (the smaller key on a tie), so the midpoint
    of keys a < b is served by a's entry, and is where b's entry is most likely to do better.
    The result is stored in a's study; bench=None only looks stored results up.
    """
    keys = sorted(entries)
    results = []
    for a, b in zip(keys, keys[1:]):
        m = (a + b) // 2
        if m == a:  # neighbouring keys: no batch size between them
            continue
        inputs = {"M": m, "served": entries[a], "neighbour": entries[b], "rounds": rounds}
        stored = studies[a].user_attrs.get(StudyAttr.MIDPOINT)
        if stored and stored.get("inputs") == inputs:
            results.append(stored)
            continue
        if bench is None:
            continue
        start = time.perf_counter()
        if SearchSpace.key(entries[a]) == SearchSpace.key(entries[b]):
            served = neighbour = {"us": None, "reason": "same config"}
        else:
            with wall_clock.phase("midpoints"):
                served, neighbour = retime(bench, [entries[a], entries[b]], m, rounds)
        result = {"inputs": inputs, "M": m, "served_by": a, "neighbour": b, "served": served,
                  "neighbour_timing": neighbour, "neighbour_better": _better(served, neighbour),
                  "seconds": time.perf_counter() - start}
        studies[a].set_user_attr(StudyAttr.MIDPOINT, result)
        results.append(result)
        if result["neighbour_better"]:  # warned once, when measured; the report keeps it
            log.warning("M=%d (served by the entry of %d): the entry of %d is faster, %.2f vs "
                        "%.2f us", m, a, b, neighbour["us"], served["us"])
    return results


def _better(served: dict, neighbour: dict) -> Optional[bool]:
    """Whether the neighbour's config is faster by more than noise; None when not both timed."""
    if served["us"] is None or neighbour["us"] is None:
        return None
    margin = max(MIN_GAIN, served["spread"], neighbour["spread"])
    return neighbour["us"] < served["us"] * (1 - margin)
