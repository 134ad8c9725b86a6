"""From studies to file entries: the best measured config of each bucket."""

from __future__ import annotations

from typing import Iterable

from autotune.space import Config
from autotune.study import BucketOutcome


def best_entries(outcomes: Iterable[BucketOutcome]) -> dict[int, Config]:
    """One entry per bucket that has a feasible measurement; buckets without one are left out."""
    entries: dict[int, Config] = {}
    for outcome in outcomes:
        best = outcome.best
        if best is not None:
            entries[outcome.M] = dict(best.config)
    return entries
