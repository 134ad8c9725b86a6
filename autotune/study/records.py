"""What a study's trials hold, read back typed: measurements (Record), a bucket's outcome, stop reasons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.problem.space import Config


class TrialAttr:
    """The user attributes of a trial, by the names they are stored under (a storage outlives the
    code that wrote it: these names do not change)."""

    CONFIG = "config"  # the kernel config proposed
    MEASURED = "measured"  # True once the benchmarker timed it (or took a first look)
    US = "us"  # its median time; absent when it cannot run
    SPREAD = "spread"
    INFEASIBLE = "infeasible"  # why it cannot run
    VERIFIED = "verified"  # its output matched the reference (absent: not checked)
    FIRST_LOOK_US = "first_look_us"  # the pruner's cheap first look
    SOURCE = "source"  # where the config came from: sampler, default, neighbour, prior, grid, ...
    EXCLUDED = "excluded"  # the space's constraint it breaks: told infeasible, never measured
    DUPLICATE_OF = "duplicate_of"  # the trial whose measurement it copies
    # Failed unmeasured: another run measures the same config, holds the budget, or it was cut off.
    DUPLICATE_OF_RUNNING = "duplicate_of_running"
    GAVE_WAY = "gave_way"
    ABANDONED = "abandoned"
    WORKER = "worker"  # the owner stamp of the run measuring it (study/liveness.py)


class StudyAttr:
    """The user attributes of a bucket's study: what it tunes (so a storage explains itself to the
    report and optuna-dashboard), and the results settled from it (consolidate/)."""

    M = "M"
    SHAPE = "shape"
    DEVICE = "device"
    SEARCH_SPACE = "search_space"
    BENCHMARK = "benchmark"
    CONSOLIDATION = "consolidation"  # the bucket's entry and how it was chosen
    MIDPOINT = "midpoint"  # the check at the batch size between this key and the next
    WALL_TIME = "wall_time"  # the last run's wall time by phase (on its smallest bucket's study)


class StopReason(str, Enum):
    """Why a bucket's run stopped (BucketOutcome.stop_reason); it compares and prints as its text."""

    BUDGET = "budget"
    PATIENCE = "patience"
    STOP_RULE = "stop rule"  # the caller's own rule (the offline evaluation: the optimum reached)
    SPACE_EXHAUSTED = "space exhausted"
    SHARED = "shared"  # the rest of the budget is held by other runs measuring the study
    NO_NEW_PROPOSALS = "no new proposals"  # the sampler proposes only known or excluded configs
    NOT_RUN = "not run"  # read from the storage: this process did not tune it
    FINISHED = "finished"  # workers=N: every bucket is finished
    INCOMPLETE = "incomplete"  # workers=N: the workers stopped before every bucket finished

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# The constraint every told trial carries: 1.0 when the config cannot run (infeasible). TPE and GP
# learn the infeasible region from it.
FEASIBILITY = "infeasible"
# States of a measured trial: a full measurement, or a first look the pruner stopped.
MEASURED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class Record:
    """A measured trial, as read back from the study."""

    number: int
    config: Config
    us: Optional[float]
    spread: float
    infeasible: Optional[str]
    source: str
    pruned: bool = False  # only a first look was taken: us is that look's (noisier) time

    @property
    def ok(self) -> bool:
        return self.us is not None

    @property
    def candidate(self) -> bool:
        """A full measurement of a config that runs: it may be the bucket's best."""
        return self.ok and not self.pruned


@dataclass
class BucketOutcome:
    M: int
    study_name: str
    records: list[Record]  # every measurement of the study, in trial order
    new_measurements: int  # made by this run
    excluded: int  # proposals dropped by the space's constraints (this run)
    duplicates: int  # proposals answered from the study (this run)
    seconds: float
    stop_reason: StopReason

    @property
    def best(self) -> Optional[Record]:
        return best_record(self.records)

    @property
    def infeasible(self) -> int:
        return sum(1 for r in self.records if not r.ok)

    @property
    def pruned(self) -> int:
        return sum(1 for r in self.records if r.pruned)


def best_record(records: Iterable[Record]) -> Optional[Record]:
    ok = [r for r in records if r.candidate]
    return min(ok, key=lambda r: r.us) if ok else None  # type: ignore[arg-type,return-value]


def read_records(study: optuna.Study) -> list[Record]:
    """Every measurement of the study (full, or a pruned first look), in trial order."""
    trials = study.get_trials(deepcopy=False, states=MEASURED)
    return [record_of(t) for t in trials if t.user_attrs.get(TrialAttr.MEASURED)]


def record_of(t: FrozenTrial) -> Record:
    return Record(number=t.number, config=dict(t.user_attrs[TrialAttr.CONFIG]),
                  us=t.user_attrs.get(TrialAttr.US), spread=float(t.user_attrs.get(TrialAttr.SPREAD, 0.0)),
                  infeasible=t.user_attrs.get(TrialAttr.INFEASIBLE),
                  source=t.user_attrs.get(TrialAttr.SOURCE, "sampler"),
                  pruned=t.state == TrialState.PRUNED)
