"""The studies of one run, each opened once per process.

Opening a study is a storage round trip, and the bucket loop, consolidation, the outcomes, the
progress bar and the report each opened every study again (after every bucket: O(buckets^2)).
The handles are kept here. What they hold, trials and attributes, is still read from the storage
on every call: other runs write to the same studies, and the storage stays the source of truth
for resume. Several threads use them at once (two bucket loops, the re-timing alongside): the
handles are added under a lock.
"""

from __future__ import annotations

import threading
from typing import Iterable, Mapping, Optional

import optuna

from autotune.study.names import StudyName
from autotune.study.tuner import open_study


class RunStudies:
    def __init__(self, storage: optuna.storages.BaseStorage, names: Mapping[int, str]):
        self.storage = storage
        self.names = dict(names)  # bucket -> study name
        self._handles: dict[str, optuna.Study] = {}
        self.tuned: dict[int, optuna.Study] = {}  # the studies this process tunes (asks in)
        self._lock = threading.RLock()

    def tune(self, M: int, sampler: optuna.samplers.BaseSampler,
             pruner: optuna.pruners.BasePruner) -> optuna.Study:
        """The bucket's study with this run's sampler, created if the storage lacks it."""
        with self._lock:
            if M not in self.tuned:
                self.tuned[M] = open_study(self.storage, self.names[M], sampler, pruner)
                self._handles[self.names[M]] = self.tuned[M]
            return self.tuned[M]

    def existing(self, buckets: Optional[Iterable[int]] = None) -> dict[int, optuna.Study]:
        """The studies of these buckets (default: all) that the storage holds (an interrupted run
        may lack some)."""
        wanted = {M: self.names[M] for M in (self.names if buckets is None else buckets)}
        self._load(wanted.values())
        return {M: self._handles[name] for M, name in wanted.items() if name in self._handles}

    def siblings(self, run: str) -> dict[int, optuna.Study]:
        """Every bucket's study of the run named `run` in the storage, this run's or an earlier
        one's (which may have tuned other buckets)."""
        found = {}
        for name in optuna.get_all_study_names(self.storage):
            parsed = StudyName.parse(name)
            if parsed is not None and parsed.run == run:
                found[parsed.M] = name
        self._load(found.values())
        return {M: self._handles[name] for M, name in found.items()}

    def _load(self, names: Iterable[str]) -> None:
        with self._lock:
            missing = [n for n in names if n not in self._handles]
            if not missing:
                return
            held = set(optuna.get_all_study_names(self.storage))
            for name in missing:
                if name in held:  # only read here: a sampler that costs nothing to build
                    self._handles[name] = optuna.load_study(
                        study_name=name, storage=self.storage,
                        sampler=optuna.samplers.RandomSampler())
