"""What a study's trials hold, read back typed: measurements (Record), a bucket's outcome, stop reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.problem.space import Config

# The stop reason of a run that left the rest of a bucket's budget to other runs measuring it.
SHARED = "shared"
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
    stop_reason: str

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
    return [record_of(t) for t in trials if t.user_attrs.get("measured")]


def record_of(t: FrozenTrial) -> Record:
    return Record(number=t.number, config=dict(t.user_attrs["config"]),
                  us=t.user_attrs.get("us"), spread=float(t.user_attrs.get("spread", 0.0)),
                  infeasible=t.user_attrs.get("infeasible"),
                  source=t.user_attrs.get("source", "sampler"),
                  pruned=t.state == TrialState.PRUNED)
