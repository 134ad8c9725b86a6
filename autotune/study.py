"""One bucket's study: ask configs, measure them, tell the results, until the budget is spent.

- Resume: finished trials of the stored study count toward the budget; trials left RUNNING by a
  killed run are marked failed (their configs may be proposed again).
- Warm starts are enqueued as the first trials (vLLM's default config, neighbours' winners).
- A config the search space excludes is told as infeasible without being measured; a config
  already measured is answered from the study. Neither counts as a measurement.
- Pruning (optional): when the benchmarker can take a cheap first look (`Screening`) and the study
  has a pruner, the look is reported to it; a config it prunes (clearly slower than the incumbent)
  skips the full timing. The pruned trial keeps the look's time, so samplers still learn from it.
- Stopping: the budget of measurements, a patience rule, or an exhausted space.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.bench.protocol import Benchmarker, Measurement, Screening
from autotune.samplers import FEASIBILITY
from autotune.space import Config, SearchSpace

# A gain smaller than this does not reset the patience count.
MIN_IMPROVEMENT = 0.005


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


def open_study(storage, name: str, sampler, pruner) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                               direction="minimize", load_if_exists=True)


def recover_interrupted(study: optuna.Study) -> int:
    """Mark trials a killed run left RUNNING as failed; return how many."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def read_records(study: optuna.Study) -> list[Record]:
    """Every measurement of the study (full, or a pruned first look), in trial order."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return [_record(t) for t in trials if t.user_attrs.get("measured")]


def _record(t: FrozenTrial) -> Record:
    return Record(number=t.number, config=dict(t.user_attrs["config"]),
                  us=t.user_attrs.get("us"), spread=float(t.user_attrs.get("spread", 0.0)),
                  infeasible=t.user_attrs.get("infeasible"),
                  source=t.user_attrs.get("source", "sampler"),
                  pruned=t.state == TrialState.PRUNED)


@dataclass
class BucketTuner:
    """Runs the ask/measure/tell loop of one bucket's study."""

    study: optuna.Study
    space: SearchSpace
    bench: Benchmarker
    M: int
    budget: int
    patience: Optional[int] = None
    lookahead: int = 1  # proposals asked ahead of their measurement (compiled meanwhile)
    exhaustive: bool = False
    on_measured: Callable[[Record], None] = lambda r: None
    # An extra stopping rule over the records so far (the offline evaluation stops at the optimum).
    stop_when: Optional[Callable[[list[Record]], bool]] = None
    _seen: dict[tuple, Record] = field(default_factory=dict, init=False)

    def run(self, warm_starts: Iterable[tuple[str, Mapping[str, int]]] = ()) -> BucketOutcome:
        start = time.perf_counter()
        recover_interrupted(self.study)
        records = read_records(self.study)
        self._seen = {SearchSpace.key(r.config): r for r in records}
        queued = self._enqueue(warm_starts)
        if self.exhaustive:  # the whole order is known: compile all of it ahead, in that order
            queued = [c for c in self.space.configs() if SearchSpace.key(c) not in self._seen]
        self.bench.prepare(queued, self.M)  # known first trials compile in parallel at once
        new = excluded = duplicates = idle = 0
        stop = "budget"
        pending: deque[tuple[optuna.Trial, Config]] = deque()  # asked, compiling, not yet timed
        try:
            while len(records) < self.budget:
                if self._space_exhausted() and not pending:
                    stop = "space exhausted"
                    break
                # Keep `lookahead` proposals in flight, so they compile while others are timed.
                asked = []
                for _ in range(2 * self.lookahead):
                    if (len(pending) >= self.lookahead
                            or len(records) + len(pending) >= self.budget
                            or len(self._seen) + len(pending) >= self.space.size()):
                        break
                    if self.exhaustive:
                        self._enqueue_next_in_grid(pending)
                    trial = self.study.ask()
                    config = self.space.suggest(trial)
                    reason = self.space.violation(config)
                    if reason is not None:
                        self._tell_excluded(trial, config, reason)
                        excluded += 1
                    elif SearchSpace.key(config) in self._seen:
                        self._tell_duplicate(trial, config)
                        duplicates += 1
                    elif any(SearchSpace.key(c) == SearchSpace.key(config) for _, c in pending):
                        self._tell_duplicate_in_batch(trial, config)
                        duplicates += 1
                    else:
                        pending.append((trial, config))
                        asked.append(config)
                if asked:
                    self.bench.prepare(asked, self.M)
                if not pending:
                    idle += 1
                    if idle >= 200:  # the sampler only proposes known or excluded configs
                        stop = "no new proposals"
                        break
                    continue
                idle = 0
                trial, config = pending.popleft()
                record = self._measure_and_tell(trial, config)
                records.append(record)
                new += 1
                self.on_measured(record)
                # The exhaustive grid measures everything: patience would cut a recorded table short.
                if (self.patience and not self.exhaustive
                        and _since_improvement(records) >= self.patience):
                    stop = "patience"
                    break
                if self.stop_when is not None and self.stop_when(records):
                    stop = "stop rule"
                    break
        finally:
            for trial, _ in pending:  # proposals never timed: failed, so they are asked again
                self.study.tell(trial, state=TrialState.FAIL)
        return BucketOutcome(M=self.M, study_name=self.study.study_name, records=records,
                             new_measurements=new, excluded=excluded, duplicates=duplicates,
                             seconds=time.perf_counter() - start, stop_reason=stop)

    # -- proposals -------------------------------------------------------------------------------
    def _enqueue(self, warm_starts: Iterable[tuple[str, Mapping[str, int]]]) -> list[Config]:
        """Queue the warm starts not measured or queued yet; return the configs queued."""
        queued: list[Config] = []
        waiting = {SearchSpace.key(self.space.decode(t.params))
                   for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                   if t.params}
        for source, config in warm_starts:
            config = {k: int(config[k]) for k in self.space.params}
            key = SearchSpace.key(config)
            if (key in self._seen or key in waiting or not self.space.contains(config)
                    or self.space.violation(config)):
                continue
            self.study.enqueue_trial(self.space.encode(config), user_attrs={"source": source})
            waiting.add(key)
            queued.append(config)
        return queued

    def _enqueue_next_in_grid(self, pending) -> None:
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        in_flight = {SearchSpace.key(c) for _, c in pending}
        for config in self.space.configs():
            key = SearchSpace.key(config)
            if key not in self._seen and key not in in_flight:
                self.study.enqueue_trial(self.space.encode(config), user_attrs={"source": "grid"})
                return

    def _space_exhausted(self) -> bool:
        return len(self._seen) >= self.space.size()

    # -- telling -----------------------------------------------------------------------------------
    def _tell_excluded(self, trial: optuna.Trial, config: Config, reason: str) -> None:
        trial.set_user_attr("config", config)
        trial.set_user_attr("excluded", reason)
        trial.set_constraint(FEASIBILITY, 1.0)
        self.study.tell(trial, math.inf)

    def _tell_duplicate(self, trial: optuna.Trial, config: Config) -> None:
        known = self._seen[SearchSpace.key(config)]
        trial.set_user_attr("config", config)
        trial.set_user_attr("duplicate_of", known.number)
        trial.set_constraint(FEASIBILITY, 0.0 if known.ok else 1.0)
        if known.pruned:
            trial.report(known.us, 0)  # type: ignore[arg-type]
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, known.us if known.ok else math.inf)

    def _tell_duplicate_in_batch(self, trial: optuna.Trial, config: Config) -> None:
        # Its twin is in flight, not measured yet: nothing to copy, so it tells nothing.
        trial.set_user_attr("config", config)
        self.study.tell(trial, state=TrialState.FAIL)

    def _measure_and_tell(self, trial: optuna.Trial, config: Config) -> Record:
        pruned = False
        try:
            m = self._first_look(trial, config)
            if m is not None and m.ok and trial.should_prune():
                pruned = True
            elif m is None or m.ok:  # a failed look is the result: the config does not run
                m = self.bench.measure(config, self.M)
        except BaseException:
            # Ctrl-C or a bug: the trial is abandoned, not left RUNNING.
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        _set_measurement_attrs(trial, config, m)
        if pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, m.us if m.ok else math.inf)
        record = Record(number=trial.number, config=config, us=m.us if m.ok else None,
                        spread=m.spread, infeasible=m.infeasible,
                        source=trial.user_attrs.get("source", "sampler"), pruned=pruned)
        self._seen[SearchSpace.key(config)] = record
        return record

    def _first_look(self, trial: optuna.Trial, config: Config) -> Optional[Measurement]:
        """The benchmarker's cheap first look, reported to the pruner; None without pruning."""
        if isinstance(self.study.pruner, optuna.pruners.NopPruner):
            return None
        if not isinstance(self.bench, Screening):
            return None
        look = self.bench.screen(config, self.M)
        if look.ok:
            trial.set_user_attr("first_look_us", look.us)
            trial.report(look.us, 0)  # type: ignore[arg-type]
        return look


def _set_measurement_attrs(trial: optuna.Trial, config: Config, m: Measurement) -> None:
    trial.set_user_attr("config", config)
    trial.set_user_attr("measured", True)
    trial.set_user_attr("spread", m.spread)
    trial.set_constraint(FEASIBILITY, 0.0 if m.ok else 1.0)
    if m.ok:
        trial.set_user_attr("us", m.us)
    else:
        trial.set_user_attr("infeasible", m.infeasible)
    if m.verified is not None:
        trial.set_user_attr("verified", m.verified)


def _since_improvement(records: list[Record]) -> int:
    """Measurements since the best last improved by at least MIN_IMPROVEMENT."""
    best = math.inf
    since = 0
    for r in records:
        if r.candidate and r.us < best * (1 - MIN_IMPROVEMENT):  # type: ignore[operator]
            best = r.us  # type: ignore[assignment]
            since = 0
        else:
            since += 1
    return since
