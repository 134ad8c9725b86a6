"""Every bucket's entry, then the midpoint check: what a run writes."""

from __future__ import annotations

from typing import Mapping, Optional

import optuna

from autotune.bench.protocol import Benchmarker
from autotune.consolidate.compare import Comparison
from autotune.consolidate.finalists import consolidate_bucket
from autotune.consolidate.midpoints import check_midpoints
from autotune.consolidate.retime import rounds_at
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import Config, SearchSpace


# -- the whole run ---------------------------------------------------------------------------------
def consolidate(studies: Mapping[int, optuna.Study], shape: MoEShape, space: SearchSpace,
                bench: Optional[Benchmarker], *, finalists: int, rounds: Optional[int],
                midpoint_rounds: int, comparison: Optional[Comparison]) -> dict[int, Config]:
    """Every bucket's entry (buckets without one are left out), then the midpoint check.

    studies: the buckets' studies the storage holds. rounds: the `retime_rounds` setting (None:
    by batch size, retime.rounds_at). bench=None (an interrupted run) measures
    nothing: it keeps the stored results that are still current and leaves out the buckets that
    have none.
    """
    entries: dict[int, Config] = {}
    for M, study in sorted(studies.items()):
        result = consolidate_bucket(study, M, shape, space, bench, finalists=finalists,
                                    rounds=rounds_at(M, rounds), comparison=comparison)
        if result and result.entry:
            entries[M] = vllm_rules.kernel_config(result.entry["config"])
    check_midpoints(dict(studies), entries, bench, midpoint_rounds)
    return entries
